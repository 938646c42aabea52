"""The pipeline's durable state, as one port: `PipelineStore`.

Two adapters implement it: the embedded SQLite store (`adapters/storage/sqlite`) and Redis
(`adapters/storage/redis`). The contract, which one test suite checks for both:

- `enqueue` makes events durable before it returns (the sender's 2xx depends on it) and
  drops duplicates by their dedup key, remembered for `DEDUP_TTL`.
- `claim` hands out queued events with a lease; events not settled by `commit` before the
  lease ends (a crashed worker) are handed out again. Nothing acknowledged is lost.
- `commit` saves a profile's context, its coalesced pending writes and the settlement of
  the events that produced them in one atomic step, so a crash never leaves half of it.
- Pending writes are keyed by (account, platform, profile): only the latest property set
  waits, and `take_due` / `settle` drive delivery, with retries and a dead-letter queue.
- `context_version` is a cheap counter per profile, raised by every commit that changes the
  profile's context and by `erase`, never lowered: what a cache of decisions keys on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

#: How long a dedup key is remembered: longer than any platform retries a delivery
#: (HubSpot: 24 h for app webhooks, 3 days for workflows; Klaviyo: about 24 h).
DEDUP_TTL = timedelta(days=7)


#: How long a published runtime report counts: a few publishing intervals, so the report of
#: a process that stopped disappears from `status` soon.
RUNTIME_TTL = timedelta(seconds=30)


class StoreClosed(Exception):
    """The store was closed: it takes nothing more (a late call during shutdown)."""


class Backpressure(Exception):
    """The queue holds more than its limit: the sender should retry later."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(f"queue holds {depth} events, limit {limit}")
        self.depth = depth
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Inbound:
    """One event to enqueue: its account, its JSON form, and the platforms to decide for."""

    account: str
    dedup_key: str
    event: Mapping[str, Any]
    platforms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """A queued event handed to a worker; `id` settles it in `commit`."""

    id: str
    account: str
    event: Mapping[str, Any]
    platforms: tuple[str, ...]
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """The latest decided properties for one profile on one platform, waiting to go out."""

    account: str
    platform: str
    profile_key: str
    identifiers: Mapping[str, str]
    properties: Mapping[str, str]
    version: int = 0
    attempts: int = 0
    first_queued_at: float = 0.0  # epoch seconds, for lag and the dead-letter age limit
    fingerprint: str = ""  # `properties.fingerprint(properties)`: what coalescing compares


@dataclass(frozen=True, slots=True)
class Settlement:
    """How delivering one pending write ended."""

    write: PendingWrite
    status: str  # "written", "retry", "fatal" or "skipped"
    reason: str = ""
    retry_at: float | None = None  # epoch seconds, for "retry"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    account: str
    platform: str
    profile_key: str
    identifiers: Mapping[str, str]
    properties: Mapping[str, str]
    reason: str
    failed_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Timer:
    """An armed timer: at `fire_at` (epoch seconds) `event` is queued for `platforms`."""

    fire_at: float
    dedup_key: str
    event: Mapping[str, Any]
    platforms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """Everything one commit changes for one profile."""

    account: str
    profile_key: str
    context: Mapping[str, Any]
    writes: Sequence[PendingWrite] = ()
    identifiers: Mapping[str, str] = field(default_factory=dict)


class PipelineStore(Protocol):
    """The durable queue, contexts, pending writes and dead letters of the pipeline."""

    def enqueue(self, items: Sequence[Inbound], now: float) -> EnqueueResult:
        """Durably queue the items not seen before; raises `Backpressure` when full."""
        ...

    def claim(self, consumer: str, limit: int, now: float) -> list[Claimed]:
        """Lease up to `limit` queued events, oldest first."""
        ...

    def resolve_profile(self, account: str, identifiers: Mapping[str, str]) -> str | None:
        """The profile key any of these identifiers already belongs to, if one does."""
        ...

    def load_context(self, account: str, profile_key: str) -> dict[str, Any] | None: ...

    def context_version(self, account: str, profile_key: str) -> int:
        """A counter raised whenever the profile's context changes (a commit that stores a
        different context, or `erase`); 0 for a profile never seen. Never goes back, so a
        value seen once names one context for good."""
        ...

    def commit(self, updates: Sequence[ProfileUpdate], done: Sequence[str], now: float) -> None:
        """Atomically save contexts, identity links and writes, and remove the settled events
        `done`. Writes coalesce by fingerprint, atomically with the check:

        - a write equal to the one waiting for the profile changes nothing;
        - one equal to what the platform last got cancels the waiting write, unless a
          version of it is being sent (then it waits, so it lands last);
        - otherwise it replaces the waiting write (a new version) or starts one, unless
          nothing waits and the platform already has it.
        """
        ...

    def mark_sending(self, writes: Sequence[PendingWrite]) -> list[PendingWrite]:
        """Note that these versions are being sent (a cancel must not overtake them), and
        return those still current: a write replaced or cancelled since `take_due` read it
        is left out and must not be sent (so a stale set never lands after a newer one)."""
        ...

    def erase(self, account: str, profile_key: str) -> None:
        """Forget everything held on a profile (a platform's deletion or privacy request)."""
        ...

    def erase_account(self, account: str) -> dict[str, int]:
        """Forget everything held for the account: queued events, contexts, identity links,
        pending and written properties, timers, dead letters, dedup keys, rate-limit and
        pause state, runtime reports; nothing of another account. Returns counts of what
        went (`events`, `profiles`, `pending`, `timers`, `dead_letters`)."""
        ...

    def depth(self) -> int:
        """Events queued and not yet settled."""
        ...

    def set_timer(self, account: str, profile_key: str, timer: Timer) -> None:
        """Arm (or re-arm) the profile's timer; it replaces any armed before."""
        ...

    def clear_timer(self, account: str, profile_key: str) -> None:
        """Disarm the profile's timer, if one is armed."""
        ...

    def fire_timers(self, now: float, limit: int = 500) -> int:
        """Queue the events of every timer due by `now` and disarm them, in one atomic step
        per timer (a timer fires once, whatever the number of processes calling this);
        returns how many fired."""
        ...

    def keep_dispatching(self, account: str, platform: str) -> bool:
        """Take or renew this process's right to dispatch (account, platform)'s writes;
        False when another live process holds it. Called on a heartbeat."""
        ...

    def take_due(self, account: str, platform: str, limit: int, now: float) -> list[PendingWrite]:
        """Up to `limit` pending writes due now, oldest first (they stay pending)."""
        ...

    def oldest_due(self, account: str, platform: str, now: float) -> float | None:
        """When the oldest due write was queued, or None when nothing is due."""
        ...

    def settle(self, settlements: Sequence[Settlement], now: float) -> None:
        """Record outcomes: written (remember it, drop the pending write unless a newer
        version replaced it), retry (due again at `retry_at`), fatal (dead-letter it),
        skipped (drop it)."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def remove_dead_letters(self, ids: Sequence[str]) -> list[DeadLetter]:
        """Remove and return the dead letters with these ids (all when `ids` is empty)."""
        ...

    def save_runtime(self, account: str, report: Mapping[str, Any]) -> None:
        """Publish what only a running process knows (rate-limit pauses, last errors), for
        `status` in other processes; a report older than `RUNTIME_TTL` is left out."""
        ...

    def status(self, now: float) -> dict[str, Any]:
        """Queue depth, oldest queued event, pending writes and dead letters, per account."""
        ...
