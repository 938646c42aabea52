"""The dispatcher on both stores, with a fake delivery and a hand-moved clock."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from connector.core.dispatch import MAX_AGE_SECONDS, Dispatcher
from connector.core.ports import ProfileWrite, WriteOutcome, WriteStatus
from connector.core.properties import fingerprint
from connector.core.storage import PendingWrite, ProfileUpdate
from tests.storage.conftest import Store

T = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


def queue(store: Store, n: int, at: float = T, block: str = "x") -> None:
    updates = []
    for i in range(n):
        props = {"dcb_block": block, "dcb_headline": str(i)}
        write = PendingWrite(
            "default",
            "hubspot",
            f"p{i}",
            {"email": f"p{i}@x.y"},
            props,
            fingerprint=fingerprint(props),
        )
        updates.append(ProfileUpdate("default", f"p{i}", {}, [write]))
    store.commit(updates, [], at)


class Delivery:
    def __init__(
        self, status: WriteStatus = WriteStatus.WRITTEN, retry_after: float | None = None
    ) -> None:
        self.calls: list[list[str]] = []
        self.status = status
        self.retry_after = retry_after

    def __call__(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        self.calls.append([w.key for w in writes])
        return [WriteOutcome(w.key, self.status, "why", self.retry_after) for w in writes]


def dispatcher(store: Store, delivery: Delivery, clock: Clock, **kw: float) -> Dispatcher:
    return Dispatcher(store, "default", "hubspot", delivery, 3, clock, flush_seconds=0.05, **kw)


def test_a_full_batch_goes_at_once_a_partial_one_after_the_flush(
    store: Store,
) -> None:
    clock, delivery = Clock(), Delivery()
    d = dispatcher(store, delivery, clock)
    queue(store, 4)
    assert d.run_once() == 3  # full
    assert d.run_once() == 0  # one left, younger than the flush interval
    assert d.waiting_for() == pytest.approx(0.05)
    clock.now += 0.05
    assert d.run_once() == 1
    assert [len(c) for c in delivery.calls] == [3, 1]


def test_pacing_spreads_partial_batches(store: Store) -> None:
    clock, delivery = Clock(), Delivery()
    d = dispatcher(store, delivery, clock, pace_seconds=0.5)
    queue(store, 1)
    clock.now += 0.05
    assert d.run_once() == 1
    queue(store, 1, clock.now, block="y")
    clock.now += 0.1
    assert d.run_once() == 0  # flush interval over, but the last call was 0.1 s ago
    clock.now += 0.4
    assert d.run_once() == 1


def test_drain_sends_a_partial_batch_now(store: Store) -> None:
    d = dispatcher(store, Delivery(), Clock())
    queue(store, 1)
    assert d.run_once(drain=True) == 1


def test_retry_after_fatal_and_expiry(store: Store) -> None:
    clock = Clock()
    queue(store, 1)
    clock.now += 1
    assert dispatcher(store, Delivery(WriteStatus.RETRY, retry_after=30), clock).run_once() == 1
    assert store.take_due("default", "hubspot", 10, clock.now + 29) == []
    clock.now += 30
    assert dispatcher(store, Delivery(WriteStatus.FATAL), clock).run_once() == 1
    [letter] = store.dead_letters()
    assert letter.reason == "why"
    queue(store, 1)
    clock.now = T + MAX_AGE_SECONDS + 1
    assert dispatcher(store, Delivery(WriteStatus.RETRY), clock).run_once() == 1
    assert "undelivered after" in store.dead_letters()[-1].reason


def test_skipped_writes_are_dropped(store: Store) -> None:
    clock = Clock()
    queue(store, 2)
    clock.now += 1
    dispatcher(store, Delivery(WriteStatus.SKIPPED), clock).run_once()
    assert store.take_due("default", "hubspot", 10, 1e12) == []
    assert store.dead_letters() == []
