"""The gate every platform call passes: pauses first, then pacing, then the rate windows.

Adapters call `wait_turn(endpoint)` right before each SDK call, then `throttled(...)`
after a 429 or `succeeded(endpoint)` after a 2xx. Because a queued call re-checks the
pauses after every sleep, none can jump a pause recorded while it waited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from connector.core.adaptive import AdaptiveRate
from connector.core.pauses import PauseBook
from connector.core.ratelimit import RateLimiter

Sleep = Callable[[float], None]


class CallGate(Protocol):
    def wait_turn(self, endpoint: str) -> None:
        """Block (through the injected sleep) until `endpoint` may be called; takes a slot."""
        ...

    def throttled(self, endpoint: str, scope: str, seconds: float, reason: str = "") -> None:
        """Record a 429 from `endpoint` that pauses `scope` for `seconds`."""
        ...

    def succeeded(self, endpoint: str) -> None:
        """Record a call the platform accepted (lets the pace recover)."""
        ...

    def paused_for(self, endpoint: str) -> float:
        """Seconds until `endpoint` is no longer paused (0.0: not paused); takes no slot.
        For calls that would rather fail at once than wait out a pause (profile reads)."""
        ...


class Throttle:
    """`CallGate` for one account: shared `Pauses`, a `RateLimiter`, one pace per endpoint."""

    def __init__(
        self,
        limiter: RateLimiter,
        pauses: PauseBook,
        rates: Mapping[str, AdaptiveRate],
        sleep: Sleep,
    ) -> None:
        self.pauses = pauses
        self._limiter = limiter
        self._rates = dict(rates)
        self._sleep = sleep

    def wait_turn(self, endpoint: str) -> None:
        rate = self._rate(endpoint)
        while True:
            wait = self.pauses.remaining([endpoint])
            if wait <= 0:
                wait = rate.delay()
            if wait <= 0:
                wait = self._limiter.reserve(endpoint)
            if wait <= 0:
                rate.note_call()
                return
            self._sleep(wait)

    def throttled(self, endpoint: str, scope: str, seconds: float, reason: str = "") -> None:
        self.pauses.pause(scope, seconds, reason)
        self._rate(endpoint).on_throttled()

    def succeeded(self, endpoint: str) -> None:
        self._rate(endpoint).on_success()

    def paused_for(self, endpoint: str) -> float:
        return self.pauses.remaining([endpoint])

    def rate(self, endpoint: str) -> float:
        """The current pace for `endpoint`, in calls per second."""
        return self._rate(endpoint).rate

    def _rate(self, endpoint: str) -> AdaptiveRate:
        rate = self._rates.get(endpoint)
        if rate is None:
            raise KeyError(f"no pace configured for endpoint {endpoint!r}")
        return rate
