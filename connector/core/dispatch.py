"""Sends one account's pending writes to one platform, in batches, and records how it went.

`Dispatcher.run_once` takes the due pending writes, waits for a fuller batch while the
oldest is younger than the flush interval, hands the batch to a `Deliverer` (which
retries, honours `Retry-After` and the rate limit) and settles every outcome in the
store: written, skipped, dead-lettered (fatal, or older than `max_age`), or due again
later when the platform asked for a longer wait than one delivery keeps a write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from connector.core.events import IDENTIFIER_KINDS, PLATFORM_NATIVE_IDS, ProfileRef
from connector.core.intake import LINK, REDECIDE
from connector.core.ports import ProfileWrite, WriteOutcome, WriteStatus
from connector.core.storage import Backpressure, Inbound, PendingWrite, PipelineStore, Settlement

log = logging.getLogger(__name__)

#: A write still undelivered this long after it was decided goes to the dead letters:
#: the decision is stale by then, and `dcb dlq replay` re-decides it with fresh context.
MAX_AGE_SECONDS = 24 * 3600.0
#: When a handed-back write named no wait, it is due again after this many seconds.
REQUEUE_SECONDS = 5.0


@dataclass
class Dispatcher:
    store: PipelineStore
    account: str
    platform: str
    deliver: Callable[[Sequence[ProfileWrite]], list[WriteOutcome]]
    max_batch: int
    clock: Callable[[], float]
    flush_seconds: float = 0.05
    pace_seconds: float = 0.0  # least time between two calls that carry a partial batch
    max_age: float = MAX_AGE_SECONDS
    on_settled: Callable[[Sequence[Settlement]], None] = field(default=lambda _s: None)
    still_valid: Callable[[PendingWrite], bool] = field(default=lambda _w: True)
    redecide: Callable[[Sequence[PendingWrite]], None] = field(default=lambda _w: None)
    _last_call: float = field(default=float("-inf"), init=False)

    def run_once(self, *, drain: bool = False) -> int:
        """Deliver one batch if one is ready; returns how many writes were settled.

        A batch is ready when it is full, or when its oldest write has waited the flush
        interval and the last call is at least `pace_seconds` ago (so a steady trickle
        spreads over the rate limit's window instead of spending it in a burst), or when
        `drain` is set (shutting down).
        """
        now = self.clock()
        due = self.store.take_due(self.account, self.platform, self.max_batch, now)
        if not due:
            return 0
        if len(due) < self.max_batch and not drain and self._wait(due, now) > 0:
            return 0
        due = self._drop_expired(due, now)
        due = self.store.mark_sending(due)
        if not due:  # all replaced, cancelled or expired since they were read
            return 0
        self._last_call = now
        outcomes = self.deliver([_profile_write(w) for w in due])
        settled_at = self.clock()
        settlements = [
            self._settlement(w, o, settled_at) for w, o in zip(due, outcomes, strict=True)
        ]
        self.store.settle(settlements, settled_at)
        self.on_settled(settlements)
        self._link(due, outcomes, settled_at)
        return len(settlements)

    def _link(
        self, due: Sequence[PendingWrite], outcomes: Sequence[WriteOutcome], now: float
    ) -> None:
        """Give a profile the record id the platform just told us (a contact created by
        email, say), so the platform's own webhooks, which name only that id, find the
        same profile instead of starting another. Best effort: a full queue skips it."""
        kind = PLATFORM_NATIVE_IDS.get(self.platform)
        links = [
            Inbound(
                self.account,
                f"link:{self.platform}:{outcome.platform_id}:{write.profile_key}",
                {REDECIDE: dict(write.identifiers), LINK: {kind: outcome.platform_id}},
                (self.platform,),
            )
            for write, outcome in zip(due, outcomes, strict=True)
            if kind is not None
            and outcome.status is WriteStatus.WRITTEN
            and outcome.platform_id
            and write.identifiers.get(kind) != outcome.platform_id
        ]
        if links:
            try:
                self.store.enqueue(links, now)
            except Backpressure:
                log.warning("queue full: %d profiles not linked to their record ids", len(links))

    def _drop_expired(self, due: Sequence[PendingWrite], now: float) -> list[PendingWrite]:
        """Writes whose content still holds; the others are decided again, not sent."""
        keep: list[PendingWrite] = []
        expired: list[PendingWrite] = []
        for write in due:
            (keep if self.still_valid(write) else expired).append(write)
        if expired:
            self.redecide(expired)
            reason = "no longer valid (valid_while): decided again"
            settlements = [Settlement(w, "skipped", reason) for w in expired]
            self.store.settle(settlements, now)
            self.on_settled(settlements)
        return keep

    def waiting_for(self) -> float:
        """Seconds until a partial batch may go (0 when one is ready)."""
        now = self.clock()
        oldest = self.store.oldest_due(self.account, self.platform, now)
        if oldest is None:
            return self.flush_seconds
        return max(
            0.0, oldest + self.flush_seconds - now, self._last_call + self.pace_seconds - now
        )

    def _wait(self, due: Sequence[PendingWrite], now: float) -> float:
        oldest = min(w.first_queued_at for w in due)
        return max(oldest + self.flush_seconds - now, self._last_call + self.pace_seconds - now)

    def _settlement(self, write: PendingWrite, outcome: WriteOutcome, now: float) -> Settlement:
        status = outcome.status
        if status is WriteStatus.WRITTEN:
            return Settlement(write, "written")
        if status is WriteStatus.SKIPPED:
            log.info(
                "%s %s: profile gone, write skipped: %s",
                self.platform,
                write.profile_key,
                outcome.reason,
            )
            return Settlement(write, "skipped", outcome.reason)
        if status is WriteStatus.FATAL:
            return Settlement(write, "fatal", outcome.reason)
        if now - write.first_queued_at > self.max_age:
            reason = f"undelivered after {int(now - write.first_queued_at)} s: {outcome.reason}"
            return Settlement(write, "fatal", reason)
        wait = outcome.retry_after if outcome.retry_after is not None else REQUEUE_SECONDS
        return Settlement(write, "retry", outcome.reason, retry_at=now + wait)


def _profile_write(write: PendingWrite) -> ProfileWrite:
    ids = {k: write.identifiers[k] for k in IDENTIFIER_KINDS if k in write.identifiers}
    return ProfileWrite(
        key=write.profile_key, profile=ProfileRef(**ids), properties=write.properties
    )
