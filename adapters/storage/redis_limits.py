"""Call-rate limits and 429 pauses shared by every process, kept in Redis.

The same shapes as `connector.core.ratelimit` and `connector.core.pauses`, so ten workers
together stay inside one account's limit and a 429 seen by one pauses them all:

- `RedisRollingWindowLimiter`: HubSpot's rule, at most `limit` calls in any `window`
  seconds, exactly: a sorted set of call times per key, trimmed and counted in one script.
- `RedisFixedWindowLimiter`: Klaviyo's burst and steady windows aligned to the clock, one
  counter per window that expires with it (INCR + PEXPIRE in one script).
- `RedisPauses`: the `Pauses` methods, on a sorted set scope -> paused until.

Time is the injected epoch clock (`time.time` in production), as on the embedded path,
so the same fake clock drives tests of both. Every host must keep its clock in sync
(NTP): a host d seconds ahead counts its calls d seconds later than the others, so the
shared window is off by at most the skew between hosts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from redis import Redis

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_scripts import LimitScripts
from connector.core.pauses import Pause
from connector.core.ports import ACCOUNT_SCOPE

Clock = Callable[[], float]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRollingWindowLimiter:
    """At most `limit` calls per key in any `window` seconds, across every process."""

    def __init__(
        self,
        client: Redis,
        keys: RedisKeys,
        account: str,
        platform: str,
        *,
        limit: int,
        window: float,
        clock: Clock,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self._keys, self._account, self._platform = keys, account, platform
        self._limit, self._window, self._clock = limit, window, clock
        self._script = LimitScripts(client).rolling_window

    def reserve(self, key: str) -> float:
        """Take a slot for `key` and return 0.0, or return the seconds until one frees."""
        now = self._clock()
        name = self._keys.rate(self._account, self._platform, key)
        oldest = self._script(
            [name, f"{name}:seq"],
            [repr(now), repr(now - self._window), self._limit, math.ceil(self._window * 1000)],
        )
        if not oldest:
            return 0.0
        return max(0.0, float(oldest) + self._window - now)


class RedisFixedWindowLimiter:
    """Per key, at most `limit` calls in each clock-aligned window of every (limit, length),
    across every process. Klaviyo: `windows=[(75, 1.0), (700, 60.0)]`."""

    def __init__(
        self,
        client: Redis,
        keys: RedisKeys,
        account: str,
        platform: str,
        *,
        windows: Sequence[tuple[int, float]],
        clock: Clock,
    ) -> None:
        if not windows or any(limit < 1 or length <= 0 for limit, length in windows):
            raise ValueError("windows must be non-empty (limit >= 1, length > 0) pairs")
        self._keys, self._account, self._platform = keys, account, platform
        self._windows = tuple(windows)
        self._clock = clock
        self._script = LimitScripts(client).fixed_windows

    def reserve(self, key: str) -> float:
        """Take a slot in every window of `key` and return 0.0, or take nothing and return
        the seconds until the fullest window ends."""
        now = self._clock()
        names, args, ends = [], [], []
        for limit, length in self._windows:
            index = math.floor(now / length)
            names.append(
                self._keys.rate(self._account, self._platform, f"{key}:{length:g}:{index}")
            )
            args += [limit, math.ceil(length * 1000) + 1000]  # outlives its window by 1 s
            ends.append((index + 1) * length)
        full = cast(list[Any], self._script(names, args))
        return max((ends[int(i) - 1] - now for i in full), default=0.0)


class RedisPauses:
    """`Pauses` shared by every process: who may not call the platform until when."""

    def __init__(
        self, client: Redis, keys: RedisKeys, account: str, platform: str, clock: Clock
    ) -> None:
        self._client = client
        self._zset = keys.pauses(account, platform)
        self._reasons = keys.pause_reasons(account, platform)
        self._clock = clock
        self._script = LimitScripts(client).pause

    def pause(self, scope: str, seconds: float, reason: str = "") -> None:
        """Keep `scope` (and, for `ACCOUNT_SCOPE`, everything) quiet for `seconds` from now;
        a pause only grows."""
        until = self._clock() + max(0.0, seconds)
        self._script([self._zset, self._reasons], [scope, repr(until), reason])

    def remaining(self, scopes: Iterable[str] = ()) -> float:
        """Seconds until neither the account nor any of `scopes` is paused (0.0: go)."""
        wanted = [ACCOUNT_SCOPE, *scopes]
        ends = cast(list[Any], self._client.zmscore(self._zset, wanted))
        now = self._clock()
        return max([0.0, *(float(end) - now for end in ends if end is not None)])

    def active(self) -> list[Pause]:
        """Pauses still running, for status pages."""
        now = self._clock()
        rows = cast(
            list[Any], self._client.zrangebyscore(self._zset, f"({now!r}", "+inf", withscores=True)
        )
        if not rows:
            return []
        reasons = cast(list[Any], self._client.hmget(self._reasons, [m for m, _ in rows]))
        return [
            Pause(_text(scope), float(until), _text(reason) if reason is not None else "")
            for (scope, until), reason in zip(rows, reasons, strict=True)
        ]
