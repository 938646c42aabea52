"""Cart abandonment: when a cart event arms a timer, when an order disarms it, and the
`cart_abandoned` event a timer turns into when it fires.

Pure policy: the store keeps the timers durably and fires each exactly once; the processor
asks `timer_for` what a profile's newest events mean for its timer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.core.events import Event, EventType, format_time

#: The abandonment window when neither the rule set nor the account sets one.
DEFAULT_ABANDON_AFTER = timedelta(minutes=30)

_ARMS = frozenset({EventType.CART_UPDATED, EventType.CHECKOUT_STARTED})


@dataclass(frozen=True, slots=True)
class Arm:
    """Fire at `fire_at` unless disarmed or re-armed first; `event` is what fires."""

    fire_at: datetime
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Disarm:
    """Cancel the profile's timer (an order came, or the cart was emptied)."""


TimerChange = Arm | Disarm


def timer_for(
    events: Sequence[Event], context: Mapping[str, Any], window: timedelta
) -> TimerChange | None:
    """What the newest cart or order event among `events` means for the profile's timer.

    `context` is the profile's context with `events` folded in. An order, or a cart left
    empty, disarms; a cart event arms (re-arms) the timer `window` after that event, to fire
    a `cart_abandoned` event carrying the cart; other events change nothing. An event older
    than the last order never arms.
    """
    relevant = [e for e in events if e.type in _ARMS or e.type is EventType.ORDER_PLACED]
    if not relevant:
        return None
    newest = max(relevant, key=lambda e: e.occurred_at)
    if newest.type is EventType.ORDER_PLACED:
        return Disarm()
    if format_time(newest.occurred_at) < str(context.get("last_order_at", "")):
        return None
    if not context.get("cart_value") and not context.get("cart_items"):
        return Disarm()
    return Arm(newest.occurred_at + window, abandoned_event(newest, context, window))


def abandoned_event(
    armed_by: Event, context: Mapping[str, Any], window: timedelta
) -> dict[str, Any]:
    """The JSON form of the `cart_abandoned` event a timer fires: the cart as it was when
    armed, for the profile's known identifiers. Its id is stable for this arming, so a
    timer fired twice (after a crash) is dropped as a duplicate."""
    cart = context.get("cart") or {}
    properties: dict[str, Any] = {"cart_value": context.get("cart_value", 0.0)}
    if cart.get("items"):
        properties["items"] = list(cart["items"])
    if cart.get("currency"):
        properties["currency"] = cart["currency"]
    if context.get("checkout_url"):
        properties["checkout_url"] = context["checkout_url"]
    fire_at = armed_by.occurred_at + window
    return {
        "type": EventType.CART_ABANDONED.value,
        "event_id": f"abandoned:{armed_by.event_id}",
        "occurred_at": format_time(fire_at),
        "profile": dict(context.get("identifiers") or armed_by.profile.to_json()),
        "properties": properties,
        "source": "timer",
    }
