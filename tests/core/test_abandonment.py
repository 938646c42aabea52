from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connector.core.abandonment import Arm, Disarm, timer_for
from connector.core.context import fold
from connector.core.events import Event, EventType, ProfileRef, parse_event

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ADA = ProfileRef(email="ada@example.com", external_id="u-1")
WINDOW = timedelta(minutes=45)


def event(kind: EventType, minutes: int = 0, **props: Any) -> Event:
    return Event(kind, f"{kind}-{minutes}", T0 + timedelta(minutes=minutes), ADA, props)


def change(*events: Event) -> object:
    context: dict[str, Any] = {}
    for e in events:
        context = fold(context, e)
    return timer_for(events, context, WINDOW)


def test_a_cart_arms_a_timer_carrying_the_cart() -> None:
    items = [{"product_id": "J-1", "name": "Jacket", "price": 200.0, "quantity": 1}]
    armed = change(
        event(
            EventType.CHECKOUT_STARTED,
            cart_value=200.0,
            items=items,
            checkout_url="https://shop.example/c",
        )
    )
    assert isinstance(armed, Arm)
    assert armed.fire_at == T0 + WINDOW
    fired = parse_event(armed.event, received_at=T0)
    assert fired.type is EventType.CART_ABANDONED
    assert fired.occurred_at == T0 + WINDOW
    assert fired.properties["items"][0]["name"] == "Jacket"
    assert fired.properties["checkout_url"] == "https://shop.example/c"
    assert fired.profile == ADA


def test_a_newer_cart_event_re_arms_from_its_own_time() -> None:
    armed = change(
        event(EventType.CART_UPDATED, 0, cart_value=10.0),
        event(EventType.CART_UPDATED, 20, cart_value=30.0),
    )
    assert isinstance(armed, Arm) and armed.fire_at == T0 + timedelta(minutes=20) + WINDOW


def test_an_order_disarms() -> None:
    assert isinstance(
        change(event(EventType.CART_UPDATED, 0, cart_value=10.0), event(EventType.ORDER_PLACED, 5)),
        Disarm,
    )


def test_an_emptied_cart_disarms_and_other_events_change_nothing() -> None:
    assert isinstance(change(event(EventType.CART_UPDATED, 0, cart_value=0.0)), Disarm)
    assert change(event(EventType.PRODUCT_VIEWED, 0, name="x")) is None


def test_a_late_cart_event_older_than_the_last_order_never_arms() -> None:
    context = fold({}, event(EventType.ORDER_PLACED, 10))
    late = event(EventType.CART_UPDATED, 5, cart_value=50.0)
    assert timer_for([late], fold(context, late), WINDOW) is None


def test_firing_twice_gives_the_same_event_id() -> None:
    first = change(event(EventType.CART_UPDATED, 0, cart_value=10.0))
    again = change(event(EventType.CART_UPDATED, 0, cart_value=10.0))
    assert isinstance(first, Arm) and isinstance(again, Arm)
    assert first.event["event_id"] == again.event["event_id"]
