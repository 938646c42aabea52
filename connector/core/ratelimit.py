"""Call-rate limits kept in process, against an injected clock.

`RateLimiter.reserve(key)` takes one call slot for `key` when one is free and returns 0.0,
or takes nothing and returns the seconds until one frees. Two window shapes cover the
platforms: HubSpot's rolling window (at most `limit` calls in any `window` seconds) and
Klaviyo's fixed windows (a burst limit per second and a steady limit per minute, both
counted in windows aligned to the clock). `LimiterByKey` routes endpoints to their own
limiter when limits differ per endpoint.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

Clock = Callable[[], float]

#: How many (key, window) counters a `FixedWindowLimiter` keeps before it forgets those
#: whose window has ended; it then waits for twice as many, so pruning costs O(1) a call.
PRUNE_AT = 10_000


class RateLimiter(Protocol):
    def reserve(self, key: str) -> float:
        """Take a slot for `key` and return 0.0, or return the seconds until one frees."""
        ...


class RollingWindowLimiter:
    """At most `limit` calls per key in any `window` seconds (HubSpot's ten-second rule)."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self._limit = limit
        self._window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - self._window:
                calls.popleft()
            if len(calls) < self._limit:
                calls.append(now)
                return 0.0
            return calls[0] + self._window - now


class FixedWindowLimiter:
    """Per key, at most `limit` calls in each clock-aligned window of every (limit, length).

    Klaviyo: `FixedWindowLimiter([(75, 1.0), (700, 60.0)], clock)`.
    """

    def __init__(self, windows: Sequence[tuple[int, float]], clock: Clock) -> None:
        if not windows or any(limit < 1 or length <= 0 for limit, length in windows):
            raise ValueError("windows must be non-empty (limit >= 1, length > 0) pairs")
        self._windows = tuple(windows)
        self._clock = clock
        self._counts: dict[tuple[str, float], tuple[int, int]] = {}
        self._prune_at = PRUNE_AT
        self._lock = threading.Lock()

    def reserve(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            wait = 0.0
            for limit, length in self._windows:
                index = math.floor(now / length)
                if self._count(key, length, index) >= limit:
                    wait = max(wait, (index + 1) * length - now)
            if wait > 0:
                return wait
            for _, length in self._windows:
                index = math.floor(now / length)
                self._counts[(key, length)] = (index, self._count(key, length, index) + 1)
            if len(self._counts) > self._prune_at:
                self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        """Forget keys whose windows have all ended (many keys: one per browser or IP)."""
        for (key, length), (index, _) in list(self._counts.items()):
            if index < math.floor(now / length):
                del self._counts[(key, length)]
        self._prune_at = max(PRUNE_AT, 2 * len(self._counts))

    def _count(self, key: str, length: float, index: int) -> int:
        seen_index, count = self._counts.get((key, length), (index, 0))
        return count if seen_index == index else 0


class LimiterByKey:
    """Sends each key to its own limiter; raises `KeyError` naming an unknown key."""

    def __init__(self, limiters: Mapping[str, RateLimiter]) -> None:
        self._limiters = dict(limiters)

    def reserve(self, key: str) -> float:
        limiter = self._limiters.get(key)
        if limiter is None:
            raise KeyError(f"no rate limit configured for endpoint {key!r}")
        return limiter.reserve(key)
