"""How a HubSpot account's contact properties read as our events (shared by the parsers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from connector.core.events import EventType

SOURCE = "hubspot"
OWN_PREFIX = "dcb_"
"""The connector's own contact properties: their change notifications are our echo."""


@dataclass(frozen=True, slots=True)
class PropertyEvent:
    """A contact property whose change means an event: its type and the field it fills."""

    event_type: EventType
    field: str


DEFAULT_PROPERTY_EVENTS: Mapping[str, PropertyEvent] = MappingProxyType(
    {
        "cart_value": PropertyEvent(EventType.CART_UPDATED, "cart_value"),
        "last_order_date": PropertyEvent(EventType.ORDER_PLACED, "last_order_date"),
    }
)
"""What a shop that keeps `cart_value` and `last_order_date` on contacts means by them."""


def integer(value: Any) -> int | None:
    """A JSON whole number or a string of digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return None
