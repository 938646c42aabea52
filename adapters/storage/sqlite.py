"""`SqlitePipelineStore`: the embedded store, one SQLite file, durable at every commit.

Enqueues use group commit: request threads hand their events to one writer thread, which
writes everything waiting in one fsync'd transaction and then releases every request in
it. Everything else runs on the calling thread's own connection; SQLite serializes writers.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters.storage.sqlite_schema import connect, migrate
from connector.core.storage import (
    DEDUP_TTL,
    RUNTIME_TTL,
    Backpressure,
    Claimed,
    DeadLetter,
    EnqueueResult,
    Inbound,
    PendingWrite,
    ProfileUpdate,
    Settlement,
    StoreClosed,
    Timer,
)

#: How long a claimed event stays leased to a worker before another may take it. A
#: worker settles a batch within a second or two; 30 s leaves room for a slow platform
#: fetch without letting a crashed worker hold events for long.
LEASE_SECONDS = 30.0
#: The most enqueue requests one group commit takes; bounds one transaction's size.
GROUP_LIMIT = 512
#: How often a caller waiting for its group commit checks that the writer still runs.
WRITER_CHECK_SECONDS = 1.0

#: Every table with an `account` column: what erasing an account empties.
ACCOUNT_TABLES = (
    "events", "dedup", "identities", "contexts", "pending", "written", "dead_letters", "timers",
)  # fmt: skip

_Job = tuple[Sequence[Inbound], float, "Future[EnqueueResult]"]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class SqlitePipelineStore:
    """The `PipelineStore` port on SQLite. Thread-safe; one process at a time."""

    def __init__(self, path: Path, queue_limit: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.queue_limit = queue_limit
        self._local = threading.local()
        migrate(self._connection())
        self._depth = self._count_events()
        self._depth_lock = threading.Lock()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._writer = threading.Thread(
            target=self._write_groups, name="dcb-group-commit", daemon=True
        )
        self._writer.start()

    # --- connections ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path)
            self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        """Stop the group-commit writer (after it drains) and close this thread's connection."""
        self._jobs.put(None)
        self._writer.join(timeout=10)
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def ping(self) -> bool:
        """True when the database answers a query."""
        self._connection().execute("SELECT 1").fetchone()
        return True

    def depth(self) -> int:
        """Events queued and not yet settled."""
        with self._depth_lock:
            return self._depth

    def _count_events(self) -> int:
        return int(self._connection().execute("SELECT count(*) FROM events").fetchone()[0])

    # --- enqueue, with group commit -------------------------------------------------------

    def enqueue(self, items: Sequence[Inbound], now: float) -> EnqueueResult:
        if not items:
            return EnqueueResult(0, 0)
        with self._depth_lock:
            if self._depth >= self.queue_limit:
                raise Backpressure(self._depth, self.queue_limit)
        done: Future[EnqueueResult] = Future()
        self._jobs.put((items, now, done))
        while True:  # a job put after close() would wait forever for a writer that is gone
            try:
                return done.result(timeout=WRITER_CHECK_SECONDS)
            except FutureTimeout:
                if not self._writer.is_alive():
                    raise StoreClosed("the store is closed: nothing was queued") from None

    def _write_groups(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            group = [first]
            while len(group) < GROUP_LIMIT:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)
                    break
                group.append(job)
            self._commit_group(group)

    def _commit_group(self, group: list[_Job]) -> None:
        results: list[EnqueueResult] = []
        try:
            with self._transaction() as db:
                for items, now, _ in group:
                    results.append(self._insert(db, items, now))
        except Exception as exc:  # every waiting request learns of the failure
            for _, _, done in group:
                done.set_exception(exc)
            return
        with self._depth_lock:
            self._depth += sum(r.accepted for r in results)
        for (_, _, done), result in zip(group, results, strict=True):
            done.set_result(result)

    @staticmethod
    def _insert(db: sqlite3.Connection, items: Sequence[Inbound], now: float) -> EnqueueResult:
        accepted = duplicates = 0
        expires = now + DEDUP_TTL.total_seconds()
        for item in items:
            row = db.execute(
                "INSERT INTO dedup (account, key, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (account, key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE dedup.expires_at < ? RETURNING key",
                (item.account, item.dedup_key, expires, now),
            ).fetchone()
            if row is None:
                duplicates += 1
                continue
            db.execute(
                "INSERT INTO events (account, event, platforms, enqueued_at) VALUES (?, ?, ?, ?)",
                (item.account, _dumps(item.event), ",".join(item.platforms), now),
            )
            accepted += 1
        return EnqueueResult(accepted, duplicates)

    # --- processing -----------------------------------------------------------------------

    def release_leases(self) -> int:
        """Make every leased event claimable now (start-up of the single embedded process)."""
        with self._transaction() as db:
            db.execute("UPDATE pending SET sending_version = 0")  # nothing is in flight now
            cursor = db.execute(
                "UPDATE events SET lease_owner = NULL, lease_until = 0 "
                "WHERE lease_owner IS NOT NULL"
            )
            return cursor.rowcount

    def claim(self, consumer: str, limit: int, now: float) -> list[Claimed]:
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE events SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 "
                "WHERE id IN (SELECT id FROM events WHERE lease_until <= ? ORDER BY id LIMIT ?) "
                "RETURNING id, account, event, platforms, attempts",
                (consumer, now + LEASE_SECONDS, now, limit),
            ).fetchall()
        rows.sort(key=lambda r: int(r[0]))
        return [
            Claimed(str(r[0]), r[1], json.loads(r[2]), tuple(p for p in r[3].split(",") if p), r[4])
            for r in rows
        ]

    def resolve_profile(self, account: str, identifiers: Mapping[str, str]) -> str | None:
        db = self._connection()
        for kind, value in identifiers.items():
            row = db.execute(
                "SELECT profile_key FROM identities WHERE account = ? AND identifier = ?",
                (account, f"{kind}:{value}"),
            ).fetchone()
            if row is not None:
                return str(row[0])
        return None

    def load_context(self, account: str, profile_key: str) -> dict[str, Any] | None:
        row = (
            self._connection()
            .execute(
                "SELECT context FROM contexts WHERE account = ? AND profile_key = ?",
                (account, profile_key),
            )
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def context_version(self, account: str, profile_key: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT version FROM context_versions WHERE account = ? AND profile_key = ?",
                (account, profile_key),
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def commit(self, updates: Sequence[ProfileUpdate], done: Sequence[str], now: float) -> None:
        with self._transaction() as db:
            for update in updates:
                self._save_profile(db, update, now)
            db.executemany("DELETE FROM events WHERE id = ?", [(int(i),) for i in done])
        with self._depth_lock:
            self._depth = max(0, self._depth - len(done))

    @staticmethod
    def _save_profile(db: sqlite3.Connection, update: ProfileUpdate, now: float) -> None:
        account, key = update.account, update.profile_key
        changed = db.execute(
            "INSERT INTO contexts (account, profile_key, context) VALUES (?, ?, ?) "
            "ON CONFLICT (account, profile_key) DO UPDATE SET context = excluded.context "
            "WHERE contexts.context IS NOT excluded.context RETURNING 1",
            (account, key, _dumps(update.context)),
        ).fetchone()
        if changed is not None:
            _bump_context_version(db, account, key)
        db.executemany(
            "INSERT OR IGNORE INTO identities (account, identifier, profile_key) VALUES (?, ?, ?)",
            [(account, f"{kind}:{value}", key) for kind, value in update.identifiers.items()],
        )
        for write in update.writes:
            _coalesce(db, account, key, write, now)

    def mark_sending(self, writes: Sequence[PendingWrite]) -> list[PendingWrite]:
        marked = []
        with self._transaction() as db:
            for w in writes:
                cursor = db.execute(
                    "UPDATE pending SET sending_version = version "
                    "WHERE account = ? AND platform = ? AND profile_key = ? AND version = ?",
                    (w.account, w.platform, w.profile_key, w.version),
                )
                if cursor.rowcount == 1:
                    marked.append(w)
        return marked

    def erase(self, account: str, profile_key: str) -> None:
        """Forget a profile: its context, identity links, pending and written properties."""
        with self._transaction() as db:
            for table in ("contexts", "identities", "pending", "written", "decisions"):
                db.execute(
                    f"DELETE FROM {table} WHERE account = ? AND profile_key = ?",
                    (account, profile_key),
                )
            _bump_context_version(db, account, profile_key)

    def erase_account(self, account: str) -> dict[str, int]:
        """Delete every row of the account, in one transaction."""
        with self._transaction() as db:
            gone = {
                table: db.execute(f"DELETE FROM {table} WHERE account = ?", (account,)).rowcount
                for table in ACCOUNT_TABLES
            }
            db.execute("DELETE FROM meta WHERE key = ?", (f"runtime:{account}",))
        with self._depth_lock:
            self._depth = max(0, self._depth - gone["events"])
        return {
            "events": gone["events"],
            "profiles": gone["contexts"],
            "pending": gone["pending"],
            "timers": gone["timers"],
            "dead_letters": gone["dead_letters"],
        }

    # --- delivery -------------------------------------------------------------------------

    def set_timer(self, account: str, profile_key: str, timer: Timer) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO timers (account, profile_key, fire_at, dedup_key, event, platforms) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account, profile_key) DO UPDATE SET "
                "fire_at = excluded.fire_at, dedup_key = excluded.dedup_key, "
                "event = excluded.event, platforms = excluded.platforms",
                (
                    account,
                    profile_key,
                    timer.fire_at,
                    timer.dedup_key,
                    _dumps(dict(timer.event)),
                    ",".join(timer.platforms),
                ),
            )

    def clear_timer(self, account: str, profile_key: str) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM timers WHERE account = ? AND profile_key = ?", (account, profile_key)
            )

    def fire_timers(self, now: float, limit: int = 500) -> int:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT account, profile_key, dedup_key, event, platforms FROM timers "
                "WHERE fire_at <= ? ORDER BY fire_at LIMIT ?",
                (now, limit),
            ).fetchall()
            items = [
                Inbound(r[0], r[2], json.loads(r[3]), tuple(p for p in r[4].split(",") if p))
                for r in rows
            ]
            result = self._insert(db, items, now)
            db.executemany(
                "DELETE FROM timers WHERE account = ? AND profile_key = ?",
                [(r[0], r[1]) for r in rows],
            )
        with self._depth_lock:
            self._depth += result.accepted
        return len(rows)

    def keep_dispatching(self, account: str, platform: str) -> bool:
        """Always True: one process owns the embedded store, so its dispatchers need no lease."""
        return True

    def take_due(self, account: str, platform: str, limit: int, now: float) -> list[PendingWrite]:
        rows = (
            self._connection()
            .execute(
                "SELECT profile_key, identifiers, properties, version, attempts, first_queued_at, "
                "fingerprint FROM pending WHERE account = ? AND platform = ? AND due_at <= ? "
                "ORDER BY due_at, first_queued_at LIMIT ?",
                (account, platform, now, limit),
            )
            .fetchall()
        )
        return [
            PendingWrite(
                account, platform, r[0], json.loads(r[1]), json.loads(r[2]), r[3], r[4], r[5], r[6]
            )
            for r in rows
        ]

    def oldest_due(self, account: str, platform: str, now: float) -> float | None:
        row = (
            self._connection()
            .execute(
                "SELECT min(first_queued_at) FROM pending WHERE account = ? AND platform = ? "
                "AND due_at <= ?",
                (account, platform, now),
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def settle(self, settlements: Sequence[Settlement], now: float) -> None:
        with self._transaction() as db:
            for s in settlements:
                self._settle_one(db, s, now)

    @staticmethod
    def _settle_one(db: sqlite3.Connection, s: Settlement, now: float) -> None:
        w = s.write
        key = (w.account, w.platform, w.profile_key)
        if s.status == "written":
            db.execute(
                "INSERT INTO written (account, platform, profile_key, properties, fingerprint, "
                "written_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account, platform, "
                "profile_key) DO UPDATE SET properties = excluded.properties, "
                "fingerprint = excluded.fingerprint, written_at = excluded.written_at",
                (*key, _dumps(dict(w.properties)), w.fingerprint, now),
            )
        elif s.status == "fatal":
            db.execute(
                "INSERT INTO dead_letters (account, platform, profile_key, identifiers, "
                "properties, reason, failed_at, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *key,
                    _dumps(dict(w.identifiers)),
                    _dumps(dict(w.properties)),
                    s.reason,
                    now,
                    w.attempts + 1,
                ),
            )
        # The call is over: nothing of this profile is in flight any more.
        db.execute(
            "UPDATE pending SET sending_version = 0 "
            "WHERE account = ? AND platform = ? AND profile_key = ?",
            key,
        )
        if s.status == "retry":  # the same version goes again later
            db.execute(
                "UPDATE pending SET attempts = attempts + 1, due_at = ? "
                "WHERE account = ? AND platform = ? AND profile_key = ? AND version = ?",
                (s.retry_at if s.retry_at is not None else now, *key, w.version),
            )
        else:  # settled for good, unless a newer version replaced it meanwhile
            db.execute(
                "DELETE FROM pending WHERE account = ? AND platform = ? AND profile_key = ? "
                "AND (version = ? OR (? = 'written' AND fingerprint = ?))",
                (*key, w.version, s.status, w.fingerprint),  # a newer but equal one is moot
            )

    # --- dead letters, upkeep and status ----------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = (
            self._connection()
            .execute(
                "SELECT id, account, platform, profile_key, identifiers, properties, reason, "
                "failed_at, attempts FROM dead_letters ORDER BY id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [_dead_letter(r) for r in rows]

    def remove_dead_letters(self, ids: Sequence[str]) -> list[DeadLetter]:
        with self._transaction() as db:
            if ids:
                marks = ",".join("?" * len(ids))
                where, args = f"WHERE id IN ({marks})", [int(i) for i in ids]
            else:
                where, args = "", []
            rows = db.execute(
                f"DELETE FROM dead_letters {where} RETURNING id, account, platform, profile_key, "
                "identifiers, properties, reason, failed_at, attempts",
                args,
            ).fetchall()
        return [_dead_letter(r) for r in sorted(rows)]

    def expire_dedup(self, now: float) -> int:
        """Forget dedup keys past their time; returns how many went."""
        with self._transaction() as db:
            return db.execute("DELETE FROM dedup WHERE expires_at < ?", (now,)).rowcount

    def save_runtime(self, account: str, report: Mapping[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"runtime:{account}", _dumps(dict(report))),
            )

    def status(self, now: float) -> dict[str, Any]:
        db = self._connection()
        accounts: dict[str, dict[str, Any]] = {}
        for key, value in db.execute("SELECT key, value FROM meta WHERE key LIKE 'runtime:%'"):
            report = json.loads(value)
            if now - float(report.pop("reported_at", 0)) <= RUNTIME_TTL.total_seconds():
                report.pop("account", None)
                accounts.setdefault(key.removeprefix("runtime:"), {}).update(report)
        for account, depth, oldest in db.execute(
            "SELECT account, count(*), min(enqueued_at) FROM events GROUP BY account"
        ):
            accounts.setdefault(account, {}).update(
                queued=depth, oldest_queued_seconds=round(now - oldest, 3)
            )
        for account, platform, count, oldest, retrying in db.execute(
            "SELECT account, platform, count(*), min(first_queued_at), sum(attempts > 0) "
            "FROM pending GROUP BY account, platform"
        ):
            accounts.setdefault(account, {}).setdefault("pending", {})[platform] = {
                "writes": count,
                "lag_seconds": round(now - oldest, 3),
                "retrying": retrying,
            }
        for account, count in db.execute(
            "SELECT account, count(*) FROM dead_letters GROUP BY account"
        ):
            accounts.setdefault(account, {})["dead_letters"] = count
        return {"store": "sqlite", "path": self.path, "accounts": accounts}


def _bump_context_version(db: sqlite3.Connection, account: str, key: str) -> None:
    db.execute(
        "INSERT INTO context_versions (account, profile_key, version) VALUES (?, ?, 1) "
        "ON CONFLICT (account, profile_key) DO UPDATE SET version = version + 1",
        (account, key),
    )


def _coalesce(
    db: sqlite3.Connection, account: str, key: str, write: PendingWrite, now: float
) -> None:
    """Apply one decided write to the profile's pending row (the rules of `commit`)."""
    where = (account, write.platform, key)
    pending = db.execute(
        "SELECT fingerprint, sending_version FROM pending "
        "WHERE account = ? AND platform = ? AND profile_key = ?",
        where,
    ).fetchone()
    written = db.execute(
        "SELECT fingerprint FROM written WHERE account = ? AND platform = ? AND profile_key = ?",
        where,
    ).fetchone()
    has_it = written is not None and written[0] == write.fingerprint
    if pending is not None and pending[0] == write.fingerprint:
        return
    if has_it and (pending is None or pending[1] == 0):
        db.execute(
            "DELETE FROM pending WHERE account = ? AND platform = ? AND profile_key = ?", where
        )
        return
    db.execute(
        "INSERT INTO pending (account, platform, profile_key, identifiers, properties, "
        "fingerprint, version, attempts, due_at, first_queued_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 1, 0, ?, ?) "
        "ON CONFLICT (account, platform, profile_key) DO UPDATE SET "
        "identifiers = excluded.identifiers, properties = excluded.properties, "
        "fingerprint = excluded.fingerprint, version = pending.version + 1, attempts = 0, "
        "due_at = min(pending.due_at, excluded.due_at)",
        (
            *where,
            _dumps(dict(write.identifiers)),
            _dumps(dict(write.properties)),
            write.fingerprint,
            now,
            now,
        ),
    )


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        id=str(row[0]),
        account=row[1],
        platform=row[2],
        profile_key=row[3],
        identifiers=json.loads(row[4]),
        properties=json.loads(row[5]),
        reason=row[6],
        failed_at=row[7],
        attempts=row[8],
    )
