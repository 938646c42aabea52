"""Deliverer over the in-memory client: retries, pauses, dead letters, on a fake clock."""

from __future__ import annotations

import random

import pytest

from connector.core.delivery import Deliverer
from connector.core.events import ProfileRef
from connector.core.pauses import Pauses
from connector.core.ports import ACCOUNT_SCOPE, ProfileWrite, WriteStatus
from connector.core.retry import RetryPolicy
from tests.fakes.clock import FakeClock
from tests.fakes.in_memory import Fault, InMemoryPlatformClient


def _writes(n: int) -> list[ProfileWrite]:
    return [
        ProfileWrite(f"k{i}", ProfileRef(email=f"p{i}@example.com"), {"dcb_block": f"b{i}"})
        for i in range(n)
    ]


def _setup(
    policy: RetryPolicy | None = None, max_batch: int = 100
) -> tuple[FakeClock, InMemoryPlatformClient, Deliverer, Pauses]:
    clock = FakeClock()
    client = InMemoryPlatformClient(clock, max_batch=max_batch)
    pauses = Pauses(clock)
    rng = random.Random(7)
    deliverer = Deliverer(client, pauses, sleep=clock.sleep, random=rng.random, policy=policy)
    return clock, client, deliverer, pauses


def test_writes_in_batches_of_max_batch() -> None:
    _, client, deliverer, _ = _setup(max_batch=10)
    outcomes = deliverer.deliver(_writes(25))
    assert [o.status for o in outcomes] == [WriteStatus.WRITTEN] * 25
    assert [len(keys) for _, keys in client.calls] == [10, 10, 5]


def test_429_storm_writes_each_once_and_never_calls_during_a_pause() -> None:
    policy = RetryPolicy(max_attempts=2)
    clock, client, deliverer, _ = _setup(policy, max_batch=10)
    client.script(*[Fault("throttle", retry_after=2.0) for _ in range(30)])
    outcomes = deliverer.deliver(_writes(40))
    assert all(o.status is WriteStatus.WRITTEN for o in outcomes)
    assert client.calls_during_pause == 0
    assert [p.writes for p in client.profiles.values()] == [1] * 40
    assert clock.now - 1_800_000_000.0 >= 60.0  # thirty 2-second pauses were waited out


def test_waiting_out_429s_does_not_use_up_attempts() -> None:
    _, client, deliverer, _ = _setup(RetryPolicy(max_attempts=2, max_pause=1000))
    client.script(*[Fault("throttle", retry_after=1.0) for _ in range(10)], Fault("fail"))
    (outcome,) = deliverer.deliver(_writes(1))
    assert outcome.status is WriteStatus.WRITTEN


def test_failures_back_off_with_full_jitter_then_dead_letter() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=4.0)
    clock, client, deliverer, _ = _setup(policy)
    client.script(*[Fault("fail") for _ in range(5)])
    (outcome,) = deliverer.deliver(_writes(1))
    assert outcome.status is WriteStatus.FATAL
    assert outcome.reason.startswith("gave up after 3 attempts: 503")
    assert len(client.calls) == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 1.0 and 0 <= clock.sleeps[1] <= 2.0


def test_only_failed_records_are_sent_again() -> None:
    _, client, deliverer, _ = _setup()
    client.script(Fault("fail", keys=frozenset({"k1"})))
    outcomes = deliverer.deliver(_writes(3))
    assert [o.status for o in outcomes] == [WriteStatus.WRITTEN] * 3
    assert [keys for _, keys in client.calls] == [("k0", "k1", "k2"), ("k1",)]


def test_fatal_and_skipped_are_final() -> None:
    _, client, deliverer, _ = _setup()
    bad = ProfileWrite("bad", ProfileRef(email="x@example.com"), {"nope": "1"})
    gone = ProfileWrite("gone", ProfileRef(hubspot_id="999"), {"dcb_block": "a"})
    outcomes = deliverer.deliver([bad, gone])
    assert [o.status for o in outcomes] == [WriteStatus.FATAL, WriteStatus.SKIPPED]
    assert "nope" in outcomes[0].reason
    assert len(client.calls) == 1


def test_long_pause_hands_writes_back_for_later() -> None:
    _, client, deliverer, pauses = _setup(RetryPolicy(max_pause=60))
    pauses.pause(ACCOUNT_SCOPE, 3600.0, "DAILY limit")
    (outcome,) = deliverer.deliver(_writes(1))
    assert outcome.status is WriteStatus.RETRY
    assert outcome.retry_after == pytest.approx(3600.0)
    assert client.calls == []


def test_daily_429_from_the_platform_hands_back_without_dead_letter() -> None:
    _, client, deliverer, _ = _setup(RetryPolicy(max_pause=60))
    client.script(Fault("throttle", retry_after=40_000.0))
    (outcome,) = deliverer.deliver(_writes(1))
    assert outcome.status is WriteStatus.RETRY and outcome.throttled
    assert len(client.calls) == 1


def test_client_exception_counts_as_failure() -> None:
    clock = FakeClock()

    class Exploding(InMemoryPlatformClient):
        def write(self, writes):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    client = Exploding(clock)
    deliverer = Deliverer(
        client, Pauses(clock), sleep=clock.sleep, random=lambda: 0.5,
        policy=RetryPolicy(max_attempts=2),
    )
    (outcome,) = deliverer.deliver(_writes(1))
    assert outcome.status is WriteStatus.FATAL
    assert "RuntimeError" in outcome.reason


def test_duplicate_keys_are_refused() -> None:
    _, _, deliverer, _ = _setup()
    with pytest.raises(ValueError, match="key"):
        deliverer.deliver(_writes(1) * 2)


def test_backoff_is_bounded_by_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    assert policy.backoff(0, lambda: 1.0) == 0.0
    assert policy.backoff(1, lambda: 1.0) == 1.0
    assert policy.backoff(3, lambda: 1.0) == 4.0
    assert policy.backoff(30, lambda: 1.0) == 5.0
    assert policy.backoff(30, lambda: 0.0) == 0.0
