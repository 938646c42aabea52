"""Drive a `PlatformClient` until every write has a final outcome.

`Deliverer.deliver(writes)` sends writes in batches of `client.max_batch` and retries
what needs retrying, through tenacity with an injected sleep:

- WRITTEN, SKIPPED and FATAL outcomes are final.
- A RETRY that is not throttled is a failure: the write is tried again after a
  full-jitter backoff, and after `policy.max_attempts` failures it comes back FATAL
  ("gave up after N attempts: ...") so the caller dead-letters it.
- A throttled RETRY (429) records a pause and is tried again once the pause is over,
  without using up an attempt. No call is made while a pause covering it is pending.
  When waiting longer would exceed `policy.max_pause` (a daily limit, say), the write comes
  back as RETRY with `retry_after` set: requeue it, do not dead-letter it.

Outcomes come back in the order of `writes`. Nothing here raises for a platform answer;
an exception escaping `client.write` counts as a failure of every write in that batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import tenacity

from connector.core.pauses import PauseBook
from connector.core.ports import ACCOUNT_SCOPE, PlatformClient, ProfileWrite, WriteOutcome
from connector.core.ports import WriteStatus as S
from connector.core.retry import Random, RetryPolicy

Sleep = Callable[[float], None]


@dataclass(slots=True)
class _Delivery:
    pending: list[ProfileWrite]
    failures: dict[str, int] = field(default_factory=dict)
    last: dict[str, WriteOutcome] = field(default_factory=dict)
    final: dict[str, WriteOutcome] = field(default_factory=dict)
    paused: float = 0.0  # seconds spent waiting out pauses
    failed_last_round: int = 0  # highest failure count among writes that just failed
    out_of_patience: bool = False


class Deliverer:
    def __init__(
        self,
        client: PlatformClient,
        pauses: PauseBook,
        *,
        sleep: Sleep,
        random: Random,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._pauses = pauses
        self._sleep = sleep
        self._random = random
        self._policy = policy or RetryPolicy()

    def deliver(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        """One final outcome per write, in order; raises `ValueError` on duplicate keys."""
        keys = [w.key for w in writes]
        if len(set(keys)) != len(keys):
            raise ValueError("writes: every write needs its own key")
        state = _Delivery(pending=list(writes))
        retrying = tenacity.Retrying(
            sleep=self._sleep,
            stop=tenacity.stop_after_attempt(self._policy.max_rounds),
            wait=lambda _: self._policy.backoff(state.failed_last_round, self._random),
            retry=tenacity.retry_if_result(lambda pending: bool(pending)),
            retry_error_callback=lambda _: state.pending,
        )
        retrying(self._round, state)
        for write in state.pending:
            state.final[write.key] = self._handed_back(state.last.get(write.key), write.key)
        return [state.final[key] for key in keys]

    def _round(self, state: _Delivery) -> list[ProfileWrite]:
        """Wait out pauses, send every pending write once, sort the outcomes."""
        if not self._wait_out_pauses(state):
            return []
        state.failed_last_round = 0
        still: list[ProfileWrite] = []
        size = max(1, self._client.max_batch)
        for start in range(0, len(state.pending), size):
            batch = state.pending[start : start + size]
            if self._pauses.remaining(self._scopes(state)) > 0:
                still.extend(state.pending[start:])  # a pause began: send the rest later
                break
            for write, outcome in zip(batch, self._send(batch), strict=True):
                if self._keep(state, write, outcome):
                    still.append(write)
        state.pending = still
        return still

    def _send(self, batch: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        try:
            outcomes = {o.key: o for o in self._client.write(batch)}
        except Exception as exc:  # a client bug must not lose the batch
            reason = f"client raised {type(exc).__name__}"
            return [WriteOutcome(w.key, S.RETRY, reason) for w in batch]
        missing = WriteOutcome("", S.RETRY, "the client gave no outcome for this write")
        return [outcomes.get(w.key, replace(missing, key=w.key)) for w in batch]

    def _keep(self, state: _Delivery, write: ProfileWrite, outcome: WriteOutcome) -> bool:
        """Record `outcome`; True when the write must be sent again."""
        state.last[write.key] = outcome
        if outcome.status is not S.RETRY:
            state.final[write.key] = outcome
            return False
        if outcome.throttled:
            wait = outcome.retry_after
            seconds = self._policy.default_throttle_wait if wait is None else wait
            self._pauses.pause(outcome.pause_scope, seconds, outcome.reason)
            return True
        failures = state.failures.get(write.key, 0) + 1
        state.failures[write.key] = failures
        if failures >= self._policy.max_attempts:
            reason = f"gave up after {failures} attempts: {outcome.reason}"
            state.final[write.key] = replace(outcome, status=S.FATAL, reason=reason)
            return False
        state.failed_last_round = max(state.failed_last_round, failures)
        return True

    def _wait_out_pauses(self, state: _Delivery) -> bool:
        """Sleep until no pause covers a pending write; False when patience runs out."""
        scopes = self._scopes(state)
        while (wait := self._pauses.remaining(scopes)) > 0:
            if state.paused + wait > self._policy.max_pause:
                state.out_of_patience = True
                return False
            self._sleep(wait)
            state.paused += wait
        return True

    @staticmethod
    def _scopes(state: _Delivery) -> set[str]:
        """The account, and every endpoint that answered this delivery with a 429."""
        return {ACCOUNT_SCOPE, *(o.pause_scope for o in state.last.values() if o.throttled)}

    def _handed_back(self, last: WriteOutcome | None, key: str) -> WriteOutcome:
        """A write still waiting when the delivery stopped: RETRY later, with the wait."""
        scopes = [last.pause_scope] if last is not None and last.throttled else []
        wait = self._pauses.remaining(scopes) or None
        reason = last.reason if last is not None else "not sent"
        return WriteOutcome(key, S.RETRY, reason, retry_after=wait, throttled=wait is not None)
