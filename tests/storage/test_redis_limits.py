"""Rate windows and pauses in Redis, on a fake clock: the core limiters' laws, shared by
every instance (as by every process)."""

from __future__ import annotations

import pytest
import redis

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_limits import (
    RedisFixedWindowLimiter,
    RedisPauses,
    RedisRollingWindowLimiter,
)
from connector.core.ports import ACCOUNT_SCOPE
from tests.fakes.clock import FakeClock

KEYS = RedisKeys()


def rolling(client: redis.Redis, clock: FakeClock, limit: int) -> RedisRollingWindowLimiter:
    return RedisRollingWindowLimiter(
        client, KEYS, "default", "hubspot", limit=limit, window=10.0, clock=clock
    )


def fixed(
    client: redis.Redis, clock: FakeClock, windows: list[tuple[int, float]]
) -> RedisFixedWindowLimiter:
    return RedisFixedWindowLimiter(client, KEYS, "default", "klaviyo", windows=windows, clock=clock)


def test_rolling_window_allows_limit_in_any_window(redis_client: redis.Redis) -> None:
    clock = FakeClock(1_800_000_000.0)
    limiter = rolling(redis_client, clock, 3)
    assert [limiter.reserve("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve("a") == pytest.approx(10.0)
    clock.advance(4.0)
    assert limiter.reserve("a") == pytest.approx(6.0)
    assert limiter.reserve("b") == 0.0  # keys are independent
    clock.advance(6.0)
    assert limiter.reserve("a") == 0.0


def test_rolling_window_is_exact_and_shared(redis_client: redis.Redis) -> None:
    clock = FakeClock(1_800_000_000.25)
    one, two = rolling(redis_client, clock, 2), rolling(redis_client, clock, 2)
    assert one.reserve("a") == 0.0
    clock.advance(9.0)
    assert two.reserve("a") == 0.0  # the other worker spends the same budget
    assert one.reserve("a") == pytest.approx(1.0)
    clock.advance(1.5)  # first call left the window, the second has not
    assert two.reserve("a") == 0.0
    assert one.reserve("a") == pytest.approx(8.5)


def test_fixed_windows_burst_and_steady(redis_client: redis.Redis) -> None:
    clock = FakeClock(1_800_000_100.0)
    limiter = fixed(redis_client, clock, [(2, 1.0), (3, 60.0)])
    other = fixed(redis_client, clock, [(2, 1.0), (3, 60.0)])
    assert limiter.reserve("k") == 0.0
    assert other.reserve("k") == 0.0
    assert limiter.reserve("k") == pytest.approx(1.0)  # burst window full
    clock.advance(1.0)
    assert other.reserve("k") == 0.0
    clock.advance(1.0)
    assert limiter.reserve("k") == pytest.approx(18.0)  # minute window (..120..180) full
    clock.advance(18.0)
    assert limiter.reserve("k") == 0.0


def test_fixed_windows_take_nothing_when_refusing(redis_client: redis.Redis) -> None:
    clock = FakeClock(1_800_000_000.0)
    limiter = fixed(redis_client, clock, [(1, 1.0), (5, 60.0)])
    limiter.reserve("k")
    for _ in range(10):
        limiter.reserve("k")  # refused: must not use up the minute window
    clock.advance(1.0)
    assert limiter.reserve("k") == 0.0


def test_limits_refuse_bad_shapes(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="window"):
        rolling(redis_client, FakeClock(), 0)
    with pytest.raises(ValueError, match="windows"):
        fixed(redis_client, FakeClock(), [])


def test_a_pause_seen_by_one_worker_pauses_all(redis_client: redis.Redis) -> None:
    clock = FakeClock(1_800_000_000.0)
    one = RedisPauses(redis_client, KEYS, "default", "klaviyo", clock)
    two = RedisPauses(redis_client, KEYS, "default", "klaviyo", clock)
    assert two.remaining() == 0.0
    one.pause("profile-import", 30.0, "429")
    assert two.remaining(["profile-import"]) == pytest.approx(30.0)
    assert two.remaining(["events"]) == 0.0  # an endpoint pause covers that endpoint only
    one.pause(ACCOUNT_SCOPE, 10.0, "daily")
    assert two.remaining(["events"]) == pytest.approx(10.0)
    one.pause("profile-import", 5.0, "shorter")  # a pause only grows
    assert two.remaining(["profile-import"]) == pytest.approx(30.0)
    clock.advance(12.0)
    [active] = two.active()
    assert (active.scope, active.until, active.reason) == (
        "profile-import", 1_800_000_030.0, "429")  # fmt: skip
