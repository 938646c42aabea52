"""The decision cache's layers (`DecisionCache`): L1 in this process, L2 shared.

- `MemoryDecisionCache`: an LRU of `CachedDecision`s per process (L1), with `evict` for
  invalidation hints.
- `RedisDecisionCache`: L2 when `DCB_REDIS_URL` is set, one JSON string per profile
  (`RedisKeys.decision`) with a TTL, shared by every process.
- `SqliteDecisionCache`: L2 of the embedded store, the `decisions` table of its file.
- `RedisInvalidations`: listens on `RedisKeys.context_changed`, which the store's commit
  and erase scripts publish to, and evicts the changed profile from an L1. Pub/sub may
  drop messages (a reconnect, a slow subscriber): it is only a hint that frees memory
  early; readers stay correct by comparing context versions on every read.

Every layer is best effort: a failing read is a miss, a failing write is skipped (and
logged), so a cache outage costs speed, never an answer.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from cachetools import LRUCache
from redis import Redis
from redis.exceptions import RedisError

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.sqlite_schema import connect
from connector.core.lookup import CachedDecision, CurrentDecision

log = logging.getLogger("dcb.cache")

#: How long a SQLite cache write waits for the database lock: a cache write that would
#: wait on the pipeline's commits is skipped instead.
SQLITE_BUSY_MS = 50
#: How long the invalidation listener waits for a message before checking it should stop.
LISTEN_SECONDS = 1.0


def _load(raw: str | bytes) -> CachedDecision | None:
    try:
        return CachedDecision.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None  # an entry from another version of the connector: a miss


def _dumps(entry: CachedDecision) -> str:
    return json.dumps(entry.to_json(), separators=(",", ":"), sort_keys=True)


class MemoryDecisionCache:
    """L1: the `size` most recently used entries of this process. Thread-safe."""

    def __init__(self, size: int) -> None:
        self._entries: LRUCache[tuple[str, str], CachedDecision] = LRUCache(maxsize=size)
        self._lock = threading.Lock()

    def get(self, account: str, profile_key: str) -> CachedDecision | None:
        with self._lock:
            return self._entries.get((account, profile_key))

    def put(self, account: str, profile_key: str, entry: CachedDecision) -> None:
        with self._lock:
            self._entries[(account, profile_key)] = entry

    def evict(self, account: str, profile_key: str, older_than: int | None = None) -> bool:
        """Drop the profile's entry (only one made from a context version below
        `older_than`, when given); returns whether one was dropped."""
        with self._lock:
            entry = self._entries.get((account, profile_key))
            if entry is None or (older_than is not None and entry.context_version >= older_than):
                return False
            del self._entries[(account, profile_key)]
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


#: Store an entry only while its context version is still the profile's (KEYS: the entry,
#: the version counter; ARGV: the entry's version, the JSON, the TTL in ms).
_PUT_IF_CURRENT = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


class RedisDecisionCache:
    """L2 on Redis: entries live `ttl` seconds (a decision is reused at most that long),
    stored only while their context version is still the profile's (so a decision
    finished after an erase never keeps the erased profile's content)."""

    def __init__(self, client: Redis, keys: RedisKeys, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = max(1, int(ttl * 1000))
        self._put = client.register_script(_PUT_IF_CURRENT)

    def get(self, account: str, profile_key: str) -> CachedDecision | None:
        try:
            raw = self.client.get(self.keys.decision(account, profile_key))
        except RedisError as exc:
            log.warning("decision cache read failed: %s", type(exc).__name__)
            return None
        return None if raw is None else _load(cast(bytes, raw))

    def put(self, account: str, profile_key: str, entry: CachedDecision) -> None:
        k = self.keys
        try:
            self._put(
                [k.decision(account, profile_key), k.context_version(account, profile_key)],
                [str(entry.context_version), _dumps(entry), self.ttl_ms],
            )
        except RedisError as exc:
            log.warning("decision cache write failed: %s", type(exc).__name__)


class SqliteDecisionCache:
    """L2 of the embedded store: the `decisions` table, on connections of its own that
    wait little for the lock and do not fsync (a lost cache entry is only a miss). An
    entry is stored only while its context version is still the profile's, so a decision
    finished after an erase never keeps the erased profile's content."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path)
            connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    def get(self, account: str, profile_key: str) -> CachedDecision | None:
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT context_version, rules_version, stored_at, decision FROM decisions "
                    "WHERE account = ? AND profile_key = ?",
                    (account, profile_key),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            log.warning("decision cache read failed: %s", exc)
            return None
        if row is None:
            return None
        try:
            decision = CurrentDecision.from_json(json.loads(row[3]))
        except (ValueError, KeyError, TypeError):
            return None
        return CachedDecision(int(row[0]), str(row[1]), float(row[2]), decision)

    def put(self, account: str, profile_key: str, entry: CachedDecision) -> None:
        try:
            self._connection().execute(
                "INSERT INTO decisions (account, profile_key, context_version, rules_version, "
                "stored_at, decision) SELECT ?, ?, ?, ?, ?, ? WHERE ? = coalesce(("
                "SELECT version FROM context_versions WHERE account = ? AND profile_key = ?), 0) "
                "ON CONFLICT (account, profile_key) DO UPDATE SET "
                "context_version = excluded.context_version, "
                "rules_version = excluded.rules_version, stored_at = excluded.stored_at, "
                "decision = excluded.decision",
                (
                    account,
                    profile_key,
                    entry.context_version,
                    entry.rules_version,
                    entry.stored_at,
                    json.dumps(entry.decision.to_json(), separators=(",", ":")),
                    entry.context_version,
                    account,
                    profile_key,
                ),
            )
        except sqlite3.Error as exc:  # busy with the pipeline's commits: skip this once
            log.debug("decision cache write skipped: %s", exc)

    def expire(self, before: float) -> int:
        """Delete entries stored before `before` (epoch seconds); returns how many."""
        try:
            cursor = self._connection().execute(
                "DELETE FROM decisions WHERE stored_at < ?", (before,)
            )
        except sqlite3.Error as exc:
            log.warning("decision cache sweep failed: %s", exc)
            return 0
        return cursor.rowcount

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class RedisInvalidations:
    """A daemon thread evicting changed profiles from an L1 (`evict(account, key,
    version)`), from the store's `context_changed` messages. Started on first use."""

    def __init__(
        self,
        client: Redis,
        keys: RedisKeys,
        evict: Callable[[str, str, int], Any],
    ) -> None:
        self.client = client
        self.channel = keys.context_changed
        self._evict = evict
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.received = 0

    def ensure_started(self) -> None:
        """Start listening, once (the caller's first lookup; after a fork, in the child)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="dcb-cache-invalidations", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * LISTEN_SECONDS)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                try:
                    pubsub.subscribe(self.channel)
                    while not self._stopping.is_set():
                        message = pubsub.get_message(timeout=LISTEN_SECONDS)
                        if message is not None:
                            self._apply(message.get("data"))
                finally:
                    pubsub.close()
            except RedisError as exc:  # messages sent meanwhile are lost: only hints
                log.warning("cache invalidation listener: %s; reconnecting", type(exc).__name__)
                self._stopping.wait(LISTEN_SECONDS)

    def _apply(self, data: Any) -> None:
        try:
            account, key, version = json.loads(data)
            self._evict(str(account), str(key), int(version))
        except (ValueError, TypeError):
            log.warning("cache invalidation: an unreadable message was ignored")
            return
        self.received += 1
