"""Slowing down after 429s and speeding up again: additive increase, multiplicative decrease.

`AdaptiveRate` starts at the documented rate (calls per second). Each 429 halves it (at most
once per `cooldown` seconds, so one burst of 429s counts once), never below
`floor_fraction` of the documented rate; each success adds back `documented /
recovery_steps` until the documented rate is reached. Below the documented rate calls are
spaced `1 / rate` apart; at full rate only the platform's windows (`ratelimit`) apply.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Clock = Callable[[], float]


class AdaptiveRate:
    def __init__(
        self,
        documented: float,
        clock: Clock,
        *,
        floor_fraction: float = 0.25,
        decrease: float = 0.5,
        recovery_steps: int = 20,
        cooldown: float = 1.0,
    ) -> None:
        if documented <= 0 or not 0 < floor_fraction <= 1 or not 0 < decrease < 1:
            raise ValueError("documented > 0, 0 < floor_fraction <= 1, 0 < decrease < 1")
        self.documented = documented
        self.floor = documented * floor_fraction
        self._clock = clock
        self._decrease = decrease
        self._step = documented / max(1, recovery_steps)
        self._cooldown = cooldown
        self._rate = documented
        self._last_decrease: float | None = None
        self._last_call: float | None = None
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self._rate

    def on_throttled(self) -> None:
        with self._lock:
            now = self._clock()
            if self._last_decrease is not None and now - self._last_decrease < self._cooldown:
                return
            self._last_decrease = now
            self._rate = max(self.floor, self._rate * self._decrease)

    def on_success(self) -> None:
        with self._lock:
            self._rate = min(self.documented, self._rate + self._step)

    def delay(self) -> float:
        """Seconds to wait before the next call keeps to the current rate (0.0: go)."""
        with self._lock:
            if self._rate >= self.documented or self._last_call is None:
                return 0.0
            return max(0.0, self._last_call + 1.0 / self._rate - self._clock())

    def note_call(self) -> None:
        with self._lock:
            self._last_call = self._clock()
