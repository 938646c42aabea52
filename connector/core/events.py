"""The canonical event every source is normalized into.

`parse_event` turns the JSON form (what `dcb simulate` and the first-party event API
take) into an `Event`, or raises `EventError` naming the field that is wrong::

    {"type": "checkout_started", "event_id": "e-123", "occurred_at": "2026-11-28T10:00:00Z",
     "profile": {"email": "ada@example.com", "external_id": "u-42"},
     "properties": {"cart_value": 200.0, "currency": "USD", "items": [...]},
     "context": {"logged_in": true, "city": "New York", "country": "US", "session_depth": 4}}

Known properties are typed when present; unknown ones are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """Every kind of event the connector understands."""

    PRODUCT_VIEWED = "product_viewed"
    CART_UPDATED = "cart_updated"
    CHECKOUT_STARTED = "checkout_started"
    CART_ABANDONED = "cart_abandoned"
    ORDER_PLACED = "order_placed"
    BACK_IN_STOCK = "back_in_stock"
    PROFILE_CREATED = "profile_created"
    PROFILE_UPDATED = "profile_updated"
    SESSION_STARTED = "session_started"


#: How a source may name a profile. `browser_id` is the site snippet's anonymous browser id:
#: no platform can address a profile by it, so it never reaches a platform.
IDENTIFIER_KINDS: tuple[str, ...] = (
    "email",
    "external_id",
    "klaviyo_id",
    "hubspot_id",
    "browser_id",
)
#: The identifiers each platform can address a profile by, in the order it prefers them.
PLATFORM_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "hubspot": ("hubspot_id", "email"),
    "klaviyo": ("klaviyo_id", "email", "external_id"),
}
#: Each platform's own id for a profile (its record id), which only the platform gives.
PLATFORM_NATIVE_IDS: dict[str, str] = {"hubspot": "hubspot_id", "klaviyo": "klaviyo_id"}


class EventError(ValueError):
    """An event's JSON form is invalid; `field` is the dotted path of the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ProfileRef:
    """The identifiers a source knows a profile by; at least one is set."""

    email: str | None = None
    external_id: str | None = None
    klaviyo_id: str | None = None
    hubspot_id: str | None = None
    browser_id: str | None = None

    def identifiers(self) -> tuple[tuple[str, str], ...]:
        """The (kind, value) pairs that are set, in `IDENTIFIER_KINDS` order."""
        return tuple(
            (kind, value) for kind in IDENTIFIER_KINDS if (value := getattr(self, kind)) is not None
        )

    def first(self) -> tuple[str, str]:
        """The first identifier, used to key a profile seen for the first time."""
        ids = self.identifiers()
        if not ids:
            raise EventError("profile", "needs at least one of " + ", ".join(IDENTIFIER_KINDS))
        return ids[0]

    def to_json(self) -> dict[str, str]:
        return dict(self.identifiers())


@dataclass(frozen=True, slots=True)
class Event:
    """One normalized event.

    `event_id` doubles as the dedup key: parsers set it from what survives a platform's
    retries, and `parse_event` derives it from the content when the sender gave none.
    """

    type: EventType
    event_id: str
    occurred_at: datetime
    profile: ProfileRef
    properties: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"

    def to_json(self) -> dict[str, Any]:
        """The JSON form `parse_event` reads back into an equal event."""
        return {
            "type": self.type.value,
            "event_id": self.event_id,
            "occurred_at": format_time(self.occurred_at),
            "profile": self.profile.to_json(),
            "properties": dict(self.properties),
            "context": dict(self.context),
            "source": self.source,
        }


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the millisecond when there is one."""
    utc = moment.astimezone(UTC)
    text = utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_time(value: Any, field_name: str) -> datetime:
    """An aware datetime from ISO 8601 text (naive means UTC) or epoch seconds."""
    if isinstance(value, bool):
        raise EventError(field_name, f"expected an ISO 8601 time, got {_show(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise EventError(field_name, f"expected an ISO 8601 time, got {_show(value)}")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise EventError(field_name, f"time out of range: {_show(value)}") from exc
    if not isinstance(value, str):
        raise EventError(field_name, f"expected an ISO 8601 time, got {_show(value)}")
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise EventError(field_name, f"expected an ISO 8601 time, got {_show(value)}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# --- typed fields -----------------------------------------------------------------------


def as_number(value: Any, field_name: str) -> float:
    """A finite number; numeric strings ("12.50") are accepted, booleans are not."""
    if isinstance(value, bool):
        raise EventError(field_name, f"expected a number, got {_show(value)}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(Decimal(value.strip()))
        except (InvalidOperation, ValueError) as exc:
            raise EventError(field_name, f"expected a number, got {_show(value)}") from exc
    else:
        raise EventError(field_name, f"expected a number, got {_show(value)}")
    if not math.isfinite(number):
        raise EventError(field_name, f"expected a finite number, got {_show(value)}")
    return number


def as_int(value: Any, field_name: str) -> int:
    number = as_number(value, field_name)
    if number != int(number):
        raise EventError(field_name, f"expected a whole number, got {_show(value)}")
    return int(number)


def as_text(value: Any, field_name: str) -> str:
    """A string; numbers are accepted as their text (ids are often numeric)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise EventError(field_name, f"expected a string, got {_show(value)}")


def as_bool(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise EventError(field_name, f"expected true or false, got {_show(value)}")


def as_currency(value: Any, field_name: str) -> str:
    text = as_text(value, field_name).strip().upper()
    if len(text) != 3 or not text.isalpha():
        raise EventError(field_name, f"expected a 3-letter currency code, got {_show(value)}")
    return text


_ITEM_FIELDS: dict[str, Any] = {
    "product_id": as_text,
    "sku": as_text,
    "name": as_text,
    "price": as_number,
    "quantity": as_int,
    "image_url": as_text,
    "url": as_text,
    "variant": as_text,
    "category": as_text,
}


def as_items(value: Any, field_name: str) -> list[dict[str, Any]]:
    """A list of line items; known item fields are typed, others kept."""
    if not isinstance(value, list):
        raise EventError(field_name, f"expected a list of items, got {_show(value)}")
    items: list[dict[str, Any]] = []
    for index, raw in enumerate(value):
        where = f"{field_name}[{index}]"
        if not isinstance(raw, Mapping):
            raise EventError(where, f"expected an object, got {_show(raw)}")
        items.append(_typed(raw, _ITEM_FIELDS, where))
    return items


_PROPERTY_FIELDS: dict[str, Any] = {
    "cart_value": as_number,
    "currency": as_currency,
    "checkout_url": as_text,
    "items": as_items,
    "order_id": as_text,
    "value": as_number,
    "product_id": as_text,
    "name": as_text,
    "price": as_number,
    "url": as_text,
    "image_url": as_text,
    "variant": as_text,
}

_CONTEXT_FIELDS: dict[str, Any] = {
    "logged_in": as_bool,
    "city": as_text,
    "country": as_text,
    "session_depth": as_int,
}


def parse_properties(raw: Mapping[str, Any], where: str = "properties") -> dict[str, Any]:
    """An event's properties with the known ones typed; raises `EventError`."""
    return _typed(raw, _PROPERTY_FIELDS, where)


def _typed(raw: Mapping[str, Any], types: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise EventError(where, f"keys must be strings, got {_show(key)}")
        convert = types.get(key)
        if value is None:
            continue
        out[key] = convert(value, f"{where}.{key}") if convert else value
    return out


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(key, f"expected an object, got {_show(value)}")
    return value


def parse_profile(raw: Any, where: str = "profile") -> ProfileRef:
    if not isinstance(raw, Mapping):
        raise EventError(where, f"expected an object, got {_show(raw)}")
    ids: dict[str, str] = {}
    for kind in IDENTIFIER_KINDS:
        value = raw.get(kind)
        if value is None or value == "":
            continue
        text = as_text(value, f"{where}.{kind}").strip()
        if text:
            ids[kind] = text.lower() if kind == "email" else text
    if not ids:
        raise EventError(where, "needs at least one of " + ", ".join(IDENTIFIER_KINDS))
    return ProfileRef(**ids)


def parse_event(data: Any, *, received_at: datetime, source: str = "api") -> Event:
    """Validate and normalize one event's JSON form.

    `received_at` stands in for a missing `occurred_at`. A missing `event_id` is derived
    from the content (not from `received_at`), so a resent identical event gets the same
    id. Raises `EventError` naming the first field that is wrong.
    """
    if not isinstance(data, Mapping):
        raise EventError("", f"an event must be a JSON object, got {_show(data)}")
    raw_type = data.get("type")
    if raw_type is None:
        raise EventError("type", "is required")
    if not isinstance(raw_type, str):
        raise EventError("type", f"expected a string, got {_show(raw_type)}")
    try:
        event_type = EventType(raw_type)
    except ValueError as exc:
        known = ", ".join(t.value for t in EventType)
        raise EventError("type", f"unknown event type {_show(raw_type)} (one of {known})") from exc
    if "profile" not in data:
        raise EventError("profile", "is required")
    profile = parse_profile(data["profile"])
    properties = _typed(_object(data, "properties"), _PROPERTY_FIELDS, "properties")
    context = _typed(_object(data, "context"), _CONTEXT_FIELDS, "context")
    raw_time = data.get("occurred_at")
    occurred_at = received_at if raw_time is None else parse_time(raw_time, "occurred_at")
    raw_id = data.get("event_id")
    if raw_id is None or raw_id == "":
        event_id = content_id(event_type, profile, properties, context, raw_time)
    else:
        event_id = as_text(raw_id, "event_id")
    return Event(
        type=event_type,
        event_id=event_id,
        occurred_at=occurred_at,
        profile=profile,
        properties=properties,
        context=context,
        source=as_text(data.get("source", source), "source"),
    )


def content_id(
    event_type: EventType,
    profile: ProfileRef,
    properties: Mapping[str, Any],
    context: Mapping[str, Any],
    occurred_at: Any = None,
) -> str:
    """A stable id from an event's content: the same content always gives the same id."""
    canonical = json.dumps(
        [event_type.value, profile.to_json(), properties, context, occurred_at],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
