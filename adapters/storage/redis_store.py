"""`RedisPipelineStore`: the `PipelineStore` port on one Redis shared by many processes.

**Queue.** One stream (`RedisKeys.events`) for every account, each entry naming its
account, read through one consumer group. One stream rather than one per account: one
XREADGROUP serves every account, the queue limit and `depth` are one XLEN as in the
embedded store, and events keep one global order; the per-account data (dedup keys,
contexts, identities, writes) is namespaced per account. `Claimed.id` is the entry id.

**Durability.** `enqueue` returns once Redis has applied the script. Redis must persist:
with `appendonly yes` and `appendfsync always` nothing acknowledged is lost; with
`everysec` a crash of the Redis host loses up to the last second of acknowledged events;
with persistence off a restart loses the queue. `status` reports the setting and warns.

**Per-profile order across processes.** Each entry carries its profile's identifiers
(`kind:value`). To hand an entry out, `claim` locks every name the entry may touch: its
identifiers and the profile keys they are linked to at that moment (a lock is a hash
`{owner, n}` counting the owner's entries on it). An entry whose names are all free or
already the claimer's is handed out; otherwise it waits, in order of first reading (its
ticket), on a waiting list every claim looks at first, and any later entry touching a
name an earlier waiting entry touches waits too. So two consumers never hold one
profile's events at once, and a profile's events are handed out in queue order. The
names are computed when an entry is handed out, not when it is queued: a new identity
link is only ever written by a commit of events carrying that identifier, whose lock
the committer holds, so the links read under the locks cannot change until `commit`
releases them.

**Failure.** A consumer that stops claiming for `min_idle` seconds (it died) has every
event it held put back on the waiting list with its ticket, its locks freed, by the next
`claim` or `release_leases` of any consumer; its consumer entry is deleted. A consumer
that was only slow finds out at `commit`, which raises `ClaimLost` and changes nothing:
the events are processed once, by whoever holds them now. Consumer names must be unique
per processor loop, and a loop commits its batch before it claims again (as `Processor`
does): each `claim` first puts back what the same consumer held and did not commit.

**Delivery.** One store instance at a time dispatches an account's writes to a platform
(a lease renewed by `take_due` and `mark_sending`); another instance's `take_due` and
`oldest_due` see nothing, so two processes never send one profile's writes at once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from redis import Redis
from redis.exceptions import ResponseError

from adapters.storage import redis_constants as c
from adapters.storage.redis_erase import erase_account
from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_scripts import StoreScripts
from adapters.storage.redis_status import account_status, redis_health
from connector.core.intake import ERASE, REDECIDE
from connector.core.storage import (
    RUNTIME_TTL,
    Backpressure,
    Claimed,
    DeadLetter,
    EnqueueResult,
    Inbound,
    PendingWrite,
    ProfileUpdate,
    Settlement,
    Timer,
)


class ClaimLost(RuntimeError):
    """A commit named events this consumer no longer holds (it was taken for dead)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def lock_names(event: Mapping[str, Any]) -> list[str]:
    """The `kind:value` identifiers of a queued item's profile (event, erase or replay)."""
    source = event.get(ERASE) or event.get(REDECIDE) or event.get("profile") or {}
    if not isinstance(source, Mapping):
        return []
    return [f"{kind}:{value}" for kind, value in source.items() if value is not None]


class RedisPipelineStore:
    """The `PipelineStore` port on Redis; thread-safe, shared by any number of processes.

    `client` is injected and stays the caller's (`close` does not close it). `min_idle`
    is how long a silent consumer keeps its events and `dispatch_lease` how long a silent
    dispatcher keeps its platform (tests shorten both); `instance` names this store for
    the dispatch lease (a random name per store, so per process).
    """

    def __init__(
        self,
        client: Redis,
        *,
        queue_limit: int,
        prefix: str = "dcb",
        consumer_group: str = "workers",
        min_idle: float = c.MIN_IDLE_SECONDS,
        dispatch_lease: float = c.DISPATCH_LEASE_SECONDS,
        instance: str | None = None,
    ) -> None:
        self.client = client
        self.queue_limit = queue_limit
        self.keys = RedisKeys(prefix)
        self.group = consumer_group
        self.min_idle_ms = int(min_idle * 1000)
        self.dispatch_lease_ms = int(dispatch_lease * 1000)
        self.instance = instance or uuid.uuid4().hex
        self._scripts = StoreScripts(client)
        self._local = threading.local()  # this thread's claims: entry id -> (consumer, account)

    def close(self) -> None:
        """Nothing to release: the client belongs to whoever made it."""

    def ping(self) -> bool:
        return bool(self.client.ping())

    def depth(self) -> int:
        return int(self.client.xlen(self.keys.events))

    # --- queue ----------------------------------------------------------------------------

    def enqueue(self, items: Sequence[Inbound], now: float) -> EnqueueResult:
        """Queue the items not seen in `DEDUP_TTL`; raises `Backpressure` when full."""
        if not items:
            return EnqueueResult(0, 0)
        args: list[Any] = [self.group, self.queue_limit, c.DEDUP_TTL_SECONDS]
        for item in items:
            args += [
                self.keys.dedup(item.account, item.dedup_key),
                item.account,
                self.keys.queued(item.account),
                _dumps(item.event),
                ",".join(item.platforms),
                _dumps(lock_names(item.event)),
                repr(now),
            ]
        first, second = self._scripts.enqueue([self.keys.events, self.keys.accounts], args)
        if int(first) < 0:
            raise Backpressure(int(second), self.queue_limit)
        return EnqueueResult(int(first), int(second))

    def claim(self, consumer: str, limit: int, now: float) -> list[Claimed]:
        """Hand out up to `limit` events whose profiles no other consumer holds, oldest
        first, after putting back what this consumer held and what dead ones held."""
        k = self.keys
        rows = self._scripts.claim(
            [k.events, k.held, k.waiting, k.tickets, k.attempts],
            [self.group, c.PARKING_CONSUMER, consumer, self.min_idle_ms, limit,
             c.WAITING_SCAN, k.prefix],
        )  # fmt: skip
        claimed = []
        for entry_id, attempts, account, event, platforms in rows:
            eid, acct = _text(entry_id), _text(account)
            self._claims()[eid] = (consumer, acct)
            names = tuple(p for p in _text(platforms).split(",") if p)
            claimed.append(Claimed(eid, acct, json.loads(event), names, int(attempts)))
        return claimed

    def release_leases(self) -> int:
        """Put back the events of consumers silent for `min_idle`; returns how many."""
        k = self.keys
        released = self._scripts.release(
            [k.events, k.held, k.waiting, k.tickets],
            [self.group, c.PARKING_CONSUMER, "", self.min_idle_ms],
        )
        return int(released)

    def expire_dedup(self, now: float) -> int:
        """Dedup keys expire by their own TTL in Redis: nothing to sweep, returns 0."""
        return 0

    # --- profiles -------------------------------------------------------------------------

    def resolve_profile(self, account: str, identifiers: Mapping[str, str]) -> str | None:
        if not identifiers:
            return None
        names = [f"{kind}:{value}" for kind, value in identifiers.items()]
        found = self.client.hmget(self.keys.identities(account), names)
        return next((_text(key) for key in cast(list[Any], found) if key is not None), None)

    def load_context(self, account: str, profile_key: str) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.context(account, profile_key))
        return None if raw is None else cast(dict[str, Any], json.loads(cast(bytes, raw)))

    def context_version(self, account: str, profile_key: str) -> int:
        raw = self.client.get(self.keys.context_version(account, profile_key))
        return 0 if raw is None else int(cast(bytes, raw))

    def commit(self, updates: Sequence[ProfileUpdate], done: Sequence[str], now: float) -> None:
        """Save contexts, identity links and coalesced writes and settle `done`, in one
        script; raises `ClaimLost` (changing nothing) when an event of `done` is no longer
        held by the consumer that claimed it on this thread (or, for an event not claimed
        on this thread, by anyone)."""
        k = self.keys
        payload = {
            "done": [self._done(entry_id) for entry_id in done],
            "updates": [self._update(u) for u in updates],
            "changed": k.context_changed,
        }
        status, entry_id = self._scripts.commit(
            [k.events, k.held, k.attempts], [self.group, repr(now), _dumps(payload)]
        )
        if _text(status) == "lost":
            raise ClaimLost(f"event {_text(entry_id)} is no longer held by this consumer")
        for entry_id in done:
            self._claims().pop(entry_id, None)

    def _claims(self) -> dict[str, tuple[str, str]]:
        """What this thread claimed (a processor claims and commits on one thread)."""
        claims: dict[str, tuple[str, str]] | None = getattr(self._local, "claims", None)
        if claims is None:
            claims = self._local.claims = {}
        return claims

    def _done(self, entry_id: str) -> dict[str, str]:
        owner, account = self._claims().get(entry_id, ("", ""))
        if not account:
            raw = self.client.hget(self.keys.held, entry_id)
            if raw is None:
                raise ClaimLost(f"event {entry_id} is not held by any consumer")
            account = json.loads(cast(bytes, raw))["account"]
        return {"id": entry_id, "owner": owner, "queued": self.keys.queued(account)}

    def _update(self, update: ProfileUpdate) -> dict[str, Any]:
        a, key = update.account, update.profile_key
        return {
            "account": a,
            "key": key,
            "context_key": self.keys.context(a, key),
            "version_key": self.keys.context_version(a, key),
            "context": _dumps(update.context),
            "identities": self.keys.identities(a),
            "links": self.keys.links(a, key),
            "identifiers": [f"{kind}:{value}" for kind, value in update.identifiers.items()],
            "writes": [self._write(a, key, w) for w in update.writes],
        }

    def _write(self, account: str, key: str, write: PendingWrite) -> dict[str, str]:
        return {
            "pending": self.keys.pending(account, write.platform, key),
            "written": self.keys.written(account, write.platform, key),
            "due": self.keys.due(account, write.platform),
            "platforms": self.keys.platforms(account),
            "platform": write.platform,
            "member": key,
            "ids": _dumps(dict(write.identifiers)),
            "props": _dumps(dict(write.properties)),
            "fp": write.fingerprint,
        }

    def erase(self, account: str, profile_key: str) -> None:
        """Forget a profile: its context, identity links, pending and written properties."""
        k = self.keys
        platforms = sorted(
            _text(p) for p in cast(set[Any], self.client.smembers(k.platforms(account)))
        )
        args: list[str] = [profile_key, account, k.context_changed]
        for p in platforms:
            args += [k.pending(account, p, profile_key), k.due(account, p),
                     k.written(account, p, profile_key)]  # fmt: skip
        self._scripts.erase(
            [k.context(account, profile_key), k.identities(account), k.links(account, profile_key),
             k.context_version(account, profile_key), k.decision(account, profile_key)],
            args,
        )

    def erase_account(self, account: str) -> dict[str, int]:
        """Forget the account: its keys, and its entries in the shared streams and timers."""
        return erase_account(self.client, self.keys, self.group, account)

    # --- delivery -------------------------------------------------------------------------

    def _dispatching(self, account: str, platform: str) -> bool:
        """Take or renew this instance's lease on dispatching (account, platform)."""
        k = self.keys
        held = self._scripts.dispatch_lease(
            [k.dispatch(account, platform), k.due(account, platform)],
            [self.instance, self.dispatch_lease_ms, k.pending(account, platform, "")],
        )
        return bool(int(held))

    def set_timer(self, account: str, profile_key: str, timer: Timer) -> None:
        key = self.keys.timer(account, profile_key)
        fields: dict[str, str] = {
            "dedup": self.keys.dedup(account, timer.dedup_key),
            "a": account,
            "queued": self.keys.queued(account),
            "e": _dumps(dict(timer.event)),
            "p": ",".join(timer.platforms),
            "i": _dumps(lock_names(timer.event)),
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=cast(Any, fields))
        pipe.zadd(self.keys.timers, {key: timer.fire_at})
        pipe.execute()

    def clear_timer(self, account: str, profile_key: str) -> None:
        key = self.keys.timer(account, profile_key)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.timers, key)
        pipe.delete(key)
        pipe.execute()

    def fire_timers(self, now: float, limit: int = 500) -> int:
        k = self.keys
        fired = self._scripts.fire_timers(
            [k.events, k.accounts, k.timers],
            [self.group, c.DEDUP_TTL_SECONDS, repr(now), limit],
        )
        return int(fired)

    def keep_dispatching(self, account: str, platform: str) -> bool:
        """Take or renew the dispatch lease of (account, platform); the running process
        calls this on a heartbeat, so a dispatcher busy in a long delivery (waiting out
        429s, say) never loses its lease to another process that would then send newer
        writes before the older ones in flight land."""
        return self._dispatching(account, platform)

    def take_due(self, account: str, platform: str, limit: int, now: float) -> list[PendingWrite]:
        """Up to `limit` writes due now, oldest first; none when another instance holds
        the dispatch lease of (account, platform)."""
        if not self._dispatching(account, platform):
            return []
        rows = self.client.zrangebyscore(
            self.keys.due(account, platform), "-inf", now, 0, limit, withscores=True
        )
        due = {_text(m): float(score) for m, score in cast(list[Any], rows)}
        writes = self._pending(account, platform, list(due))
        return sorted(writes, key=lambda w: (due[w.profile_key], w.first_queued_at))

    def _pending(self, account: str, platform: str, members: list[str]) -> list[PendingWrite]:
        pipe = self.client.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(self.keys.pending(account, platform, member))
        writes = []
        for member, row in zip(members, pipe.execute(), strict=True):
            if not row:
                continue
            r = {_text(f): _text(v) for f, v in row.items()}
            writes.append(
                PendingWrite(
                    account,
                    platform,
                    member,
                    json.loads(r["ids"]),
                    json.loads(r["props"]),
                    version=int(r["v"]),
                    attempts=int(r["n"]),
                    first_queued_at=float(r["first"]),
                    fingerprint=r["fp"],
                )
            )
        return writes

    def oldest_due(self, account: str, platform: str, now: float) -> float | None:
        holder = self.client.get(self.keys.dispatch(account, platform))
        if holder is not None and _text(holder) != self.instance:
            return None
        members = self.client.zrangebyscore(
            self.keys.due(account, platform), "-inf", now, 0, c.OLDEST_DUE_SCAN
        )
        pipe = self.client.pipeline(transaction=False)
        for m in cast(list[Any], members):
            pipe.hget(self.keys.pending(account, platform, _text(m)), "first")
        firsts = [float(f) for f in pipe.execute() if f is not None]
        return min(firsts) if firsts else None

    def mark_sending(self, writes: Sequence[PendingWrite]) -> list[PendingWrite]:
        if not writes:
            return []
        w0 = writes[0]
        args: list[Any] = [self.instance, self.dispatch_lease_ms]
        for w in writes:
            args += [self.keys.pending(w.account, w.platform, w.profile_key), str(w.version)]
        marked = self._scripts.mark_sending([self.keys.dispatch(w0.account, w0.platform)], args)
        return [writes[int(n) - 1] for n in cast(list[Any], marked)]

    def settle(self, settlements: Sequence[Settlement], now: float) -> None:
        rows = [self._settlement(s, now) for s in settlements]
        if rows:
            self._scripts.settle([self.keys.dead_letters], [repr(now), _dumps(rows)])

    def _settlement(self, s: Settlement, now: float) -> dict[str, str]:
        w = s.write
        dead = {
            "platform": w.platform, "profile_key": w.profile_key,
            "identifiers": dict(w.identifiers), "properties": dict(w.properties),
            "reason": s.reason, "failed_at": now, "attempts": w.attempts + 1,
        }  # fmt: skip
        return {
            "status": s.status,
            "account": w.account,
            "pending": self.keys.pending(w.account, w.platform, w.profile_key),
            "written": self.keys.written(w.account, w.platform, w.profile_key),
            "due": self.keys.due(w.account, w.platform),
            "member": w.profile_key,
            "version": str(w.version),
            "fp": w.fingerprint,
            "props": _dumps(dict(w.properties)),
            "retry_at": repr(s.retry_at if s.retry_at is not None else now),
            "dead": _dumps(dead),
        }

    # --- dead letters and status ----------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.client.xrange(self.keys.dead_letters, "-", "+", count=limit)
        return [_dead_letter(entry_id, fields) for entry_id, fields in cast(list[Any], rows)]

    def remove_dead_letters(self, ids: Sequence[str]) -> list[DeadLetter]:
        key = self.keys.dead_letters
        if not ids:
            rows = cast(list[Any], self.client.xrange(key, "-", "+"))
        else:
            rows = []
            for entry_id in ids:
                try:
                    rows += cast(list[Any], self.client.xrange(key, entry_id, entry_id))
                except ResponseError:  # not a stream id: no such dead letter
                    continue
        letters = [_dead_letter(entry_id, fields) for entry_id, fields in rows]
        if letters:
            self.client.xdel(key, *[d.id for d in letters])
        return sorted(letters, key=lambda d: _id_order(d.id))

    def save_runtime(self, account: str, report: Mapping[str, Any]) -> None:
        key = self.keys.runtime(account, self.instance)
        self.client.set(key, _dumps(dict(report)), ex=int(RUNTIME_TTL.total_seconds()))

    def status(self, now: float) -> dict[str, Any]:
        """Queue, pending writes and dead letters per account, and Redis's data safety."""
        accounts = account_status(self.client, self.keys, self._scripts, now)
        for key in self.client.scan_iter(match=self.keys.runtime("*", "*"), count=100):
            raw = self.client.get(key)
            if raw is None:
                continue
            report = json.loads(_text(raw))
            account = accounts.setdefault(str(report.pop("account", "default")), {})
            for section in ("paused", "last_errors"):
                account.setdefault(section, {}).update(report.get(section) or {})
        health = redis_health(self.client)
        return {"store": "redis", "prefix": self.keys.prefix, "accounts": accounts, **health}


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _dead_letter(entry_id: Any, fields: Mapping[Any, Any]) -> DeadLetter:
    f = {_text(k): _text(v) for k, v in fields.items()}
    d = json.loads(f["d"])
    return DeadLetter(
        id=_text(entry_id),
        account=f["a"],
        platform=d["platform"],
        profile_key=d["profile_key"],
        identifiers=d["identifiers"],
        properties=d["properties"],
        reason=d["reason"],
        failed_at=float(d["failed_at"]),
        attempts=int(d["attempts"]),
    )
