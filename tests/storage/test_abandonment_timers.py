"""Cart abandonment timers on both stores: armed by carts, disarmed by orders, fired once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from blocks.loading import load_library
from connector.core.intake import ERASE
from connector.core.processing import Processor
from connector.core.storage import Inbound
from connector.rulesets import load_ruleset_file
from tests.storage.conftest import Store

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def processor_for(store: Store, clock: Clock) -> Processor:
    library = load_library()
    rules = load_ruleset_file(None, library.catalogue)
    return Processor(
        store, lambda _a: rules, library.renderer, clock, abandon_after=timedelta(minutes=30)
    )


def send(store: Store, clock: Clock, kind: str, eid: str, **props: Any) -> None:
    event = {
        "type": kind,
        "event_id": eid,
        "occurred_at": clock.now.isoformat(),
        "profile": {"email": "ada@example.com"},
        "properties": props,
    }
    store.enqueue([Inbound("default", eid, event, ("hubspot",))], clock.now.timestamp())


def blocks(store: Store) -> list[str]:
    return [w.properties["dcb_block"] for w in store.take_due("default", "hubspot", 10, 1e12)]


def settle_all(processor: Processor) -> None:
    while processor.run_once():
        pass


def test_a_cart_left_alone_fires_cart_abandoned_once_after_the_window(
    store: Store, clock: Clock
) -> None:
    processor = processor_for(store, clock)
    send(
        store,
        clock,
        "checkout_started",
        "c1",
        cart_value=80.0,
        checkout_url="https://shop.example/c/1",
    )
    settle_all(processor)
    assert blocks(store) == ["we_noticed"]
    clock.now += timedelta(minutes=29)
    assert store.fire_timers(clock.now.timestamp()) == 0
    clock.now += timedelta(minutes=2)
    assert store.fire_timers(clock.now.timestamp()) == 1
    assert store.fire_timers(clock.now.timestamp()) == 0  # once
    settle_all(processor)
    [write] = store.take_due("default", "hubspot", 10, 1e12)
    assert write.properties["dcb_block"] == "cart_abandonment"
    assert write.properties["dcb_cta_url"] == "https://shop.example/c/1"


def test_a_new_cart_event_re_arms_and_an_order_disarms(store: Store, clock: Clock) -> None:
    processor = processor_for(store, clock)
    send(store, clock, "cart_updated", "c1", cart_value=20.0)
    settle_all(processor)
    clock.now += timedelta(minutes=20)
    send(store, clock, "cart_updated", "c2", cart_value=30.0)
    settle_all(processor)
    clock.now += timedelta(minutes=20)  # 40 min after the first, 20 after the second
    assert store.fire_timers(clock.now.timestamp()) == 0
    send(store, clock, "order_placed", "o1", value=30.0)
    settle_all(processor)
    clock.now += timedelta(hours=2)
    assert store.fire_timers(clock.now.timestamp()) == 0  # never after an order


def test_timers_fire_once_when_many_processes_look_at_the_same_moment(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    stores = [make_store() for _ in range(4)]  # one database or Redis, four processes' views
    first = stores[0]
    processor = processor_for(first, clock)
    for i in range(20):
        event = {
            "type": "cart_updated",
            "event_id": f"c{i}",
            "occurred_at": clock.now.isoformat(),
            "profile": {"email": f"p{i}@example.com"},
            "properties": {"cart_value": 10.0},
        }
        first.enqueue([Inbound("default", f"c{i}", event, ("hubspot",))], clock.now.timestamp())
    settle_all(processor)
    later = (clock.now + timedelta(hours=1)).timestamp()
    fired: list[int] = []
    threads = [
        threading.Thread(target=lambda s=s: fired.append(s.fire_timers(later))) for s in stores
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 20
    claimed = first.claim("w", 100, later)
    assert sorted(c.event["type"] for c in claimed) == ["cart_abandoned"] * 20


def test_erasing_a_profile_disarms_its_timer(store: Store, clock: Clock) -> None:
    processor = processor_for(store, clock)
    send(store, clock, "checkout_started", "c1", cart_value=80.0)
    settle_all(processor)
    erase = {ERASE: {"email": "ada@example.com"}}
    store.enqueue([Inbound("default", "erase:1", erase, ("hubspot",))], clock.now.timestamp())
    settle_all(processor)
    clock.now += timedelta(hours=1)
    assert store.fire_timers(clock.now.timestamp()) == 0  # the cart would bring Ada back
    settle_all(processor)
    assert store.resolve_profile("default", {"email": "ada@example.com"}) is None
