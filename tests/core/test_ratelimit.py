"""Rate windows, pauses, the adaptive pace and the call gate, on a fake clock."""

from __future__ import annotations

import pytest

from connector.core.adaptive import AdaptiveRate
from connector.core.pauses import Pauses
from connector.core.ports import ACCOUNT_SCOPE
from connector.core.ratelimit import FixedWindowLimiter, LimiterByKey, RollingWindowLimiter
from connector.core.throttle import Throttle
from tests.fakes.clock import FakeClock


def test_rolling_window_allows_limit_in_any_window() -> None:
    clock = FakeClock(0.0)
    limiter = RollingWindowLimiter(3, 10.0, clock)
    assert [limiter.reserve("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve("a") == pytest.approx(10.0)
    clock.advance(4.0)
    assert limiter.reserve("a") == pytest.approx(6.0)
    assert limiter.reserve("b") == 0.0  # keys are independent
    clock.advance(6.0)
    assert limiter.reserve("a") == 0.0


def test_rolling_window_is_exact_not_bucketed() -> None:
    clock = FakeClock(0.0)
    limiter = RollingWindowLimiter(2, 10.0, clock)
    limiter.reserve("a")
    clock.advance(9.0)
    limiter.reserve("a")
    clock.advance(1.5)  # first call left the window, the second has not
    assert limiter.reserve("a") == 0.0
    assert limiter.reserve("a") == pytest.approx(8.5)


def test_fixed_windows_burst_and_steady() -> None:
    clock = FakeClock(100.0)
    limiter = FixedWindowLimiter([(2, 1.0), (3, 60.0)], clock)
    assert limiter.reserve("k") == 0.0
    assert limiter.reserve("k") == 0.0
    assert limiter.reserve("k") == pytest.approx(1.0)  # burst window full
    clock.advance(1.0)
    assert limiter.reserve("k") == 0.0
    clock.advance(1.0)
    assert limiter.reserve("k") == pytest.approx(18.0)  # minute window (120..180) full
    clock.advance(18.0)
    assert limiter.reserve("k") == 0.0


def test_fixed_windows_take_nothing_when_refusing() -> None:
    clock = FakeClock(0.0)
    limiter = FixedWindowLimiter([(1, 1.0), (5, 60.0)], clock)
    limiter.reserve("k")
    for _ in range(10):
        limiter.reserve("k")  # refused: must not use up the minute window
    clock.advance(1.0)
    assert limiter.reserve("k") == 0.0


def test_limiter_by_key_routes_and_names_unknown() -> None:
    clock = FakeClock(0.0)
    limiter = LimiterByKey({"a": RollingWindowLimiter(1, 1.0, clock)})
    assert limiter.reserve("a") == 0.0
    with pytest.raises(KeyError, match="'b'"):
        limiter.reserve("b")


def test_pause_only_grows_and_account_covers_all() -> None:
    clock = FakeClock(0.0)
    pauses = Pauses(clock)
    pauses.pause("profile-import", 5.0)
    pauses.pause("profile-import", 2.0)
    assert pauses.remaining(["profile-import"]) == pytest.approx(5.0)
    assert pauses.remaining(["bulk"]) == 0.0
    pauses.pause(ACCOUNT_SCOPE, 8.0, "DAILY limit")
    assert pauses.remaining(["bulk"]) == pytest.approx(8.0)
    assert [p.reason for p in pauses.active() if p.scope == ACCOUNT_SCOPE] == ["DAILY limit"]
    clock.advance(8.0)
    assert pauses.remaining(["profile-import", "bulk"]) == 0.0


def test_adaptive_rate_never_below_a_quarter_and_recovers() -> None:
    clock = FakeClock(0.0)
    rate = AdaptiveRate(10.0, clock, recovery_steps=10, cooldown=1.0)
    for _ in range(10):
        rate.on_throttled()
        clock.advance(1.0)
    assert rate.rate == pytest.approx(2.5)
    for _ in range(10):
        rate.on_success()
    assert rate.rate == pytest.approx(10.0)


def test_adaptive_rate_counts_one_burst_of_429s_once() -> None:
    clock = FakeClock(0.0)
    rate = AdaptiveRate(10.0, clock)
    for _ in range(5):
        rate.on_throttled()
    assert rate.rate == pytest.approx(5.0)


def test_adaptive_rate_spaces_calls_only_when_slowed() -> None:
    clock = FakeClock(0.0)
    rate = AdaptiveRate(4.0, clock)
    rate.note_call()
    assert rate.delay() == 0.0
    rate.on_throttled()  # 2 calls/s
    rate.note_call()
    assert rate.delay() == pytest.approx(0.5)


def _throttle(clock: FakeClock, limit: int = 100) -> Throttle:
    pauses = Pauses(clock)
    limiter = RollingWindowLimiter(limit, 10.0, clock)
    return Throttle(limiter, pauses, {"api": AdaptiveRate(limit / 10.0, clock)}, clock.sleep)


def test_gate_waits_out_the_pause_before_calling() -> None:
    clock = FakeClock(0.0)
    gate = _throttle(clock)
    gate.throttled("api", ACCOUNT_SCOPE, 3.0)
    gate.wait_turn("api")
    assert clock.now >= 3.0


def test_gate_holds_calls_to_the_window_limit() -> None:
    clock = FakeClock(0.0)
    gate = _throttle(clock, limit=5)
    times = []
    for _ in range(12):
        gate.wait_turn("api")
        times.append(clock.now)
    for i, t in enumerate(times):
        assert sum(1 for u in times[: i + 1] if u > t - 10.0) <= 5


def test_gate_rejects_unknown_endpoint() -> None:
    with pytest.raises(KeyError, match="nope"):
        _throttle(FakeClock()).wait_turn("nope")
