"""How long to wait before trying a failed write again, and when to give up.

Full-jitter exponential backoff: after the n-th failure wait a uniform random time in
`[0, min(max_delay, base_delay * 2 ** (n - 1))]`, drawn from an injected `random()`.
Only failures count towards `max_attempts`; waiting out a 429 is bounded separately by
`max_pause` (the longest a delivery keeps a write waiting before handing it back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Random = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5  # failed tries (5xx, timeouts, ...) before a write is dead-lettered
    base_delay: float = 0.5  # seconds; the first backoff is drawn from [0, base_delay]
    max_delay: float = 30.0  # cap of one backoff
    max_pause: float = 300.0  # total seconds a delivery waits out 429 pauses, then hands back
    default_throttle_wait: float = 1.0  # a 429 that named no wait pauses this long
    max_rounds: int = 1000  # safety net: rounds of calls one delivery may make

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_pause < 0:
            raise ValueError("delays must be >= 0")

    def backoff(self, failures: int, random: Random) -> float:
        """Seconds to wait after the `failures`-th failure (full jitter); 0.0 for none."""
        if failures <= 0:
            return 0.0
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 60))
        return float(random() * ceiling)
