"""HubSpot workflow "Send a webhook" bodies -> one canonical event.

HubSpot does not pin down the body a workflow action posts, so every shape seen in the
wild is accepted:

- `{"objectId": 123, "email": "ada@example.com", "portalId": 33,
  "properties": {"cart_value": "212.5", ...}}` (`hs_object_id` may stand for `objectId`);
- a flat body of chosen properties: `{"hs_object_id": "123", "email": ..., "cart_value": ...}`;
- the legacy v1 contact: `{"vid": 123, "canonical-vid": 123, "portal-id": 33,
  "properties": {"email": {"value": "ada@example.com", "versions": [...]}, ...}}`.

The event's type is the caller's (the web layer takes it from the webhook URL, since a
workflow cannot say why it fired); its properties are the contact's, minus identifiers,
empty values and our own `dcb_*` properties, with mapped properties renamed to their
canonical field (`PropertyEvent.field`). The dedup key is a hash of that content: a retry
repeats it, a later run with changed properties does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.hubspot.inbound_mapping import (
    DEFAULT_PROPERTY_EVENTS,
    OWN_PREFIX,
    SOURCE,
    PropertyEvent,
    integer,
)
from connector.core.events import EventError, EventType, parse_event
from connector.core.inbound import Malformed, ParseError, ParseResult, kind_of, load_json

_ID_KEYS = ("objectId", "hs_object_id", "canonical-vid", "vid")
_ACCOUNT_KEYS = ("portalId", "portal-id")
_LEGACY_KEYS = frozenset({
    "properties", "is-contact", "identity-profiles", "profile-token", "profile-url",
    "form-submissions", "list-memberships", "merged-vids", "merge-audits", "addedAt",
    "associated-company",
})  # fmt: skip
_NOT_PROPERTIES = frozenset({*_ID_KEYS, *_ACCOUNT_KEYS, *_LEGACY_KEYS, "email"})


def parse_workflow_webhook(
    body: bytes,
    *,
    received_at: datetime,
    event_type: EventType = EventType.PROFILE_UPDATED,
    property_events: Mapping[str, PropertyEvent] = DEFAULT_PROPERTY_EVENTS,
    own_prefix: str = OWN_PREFIX,
) -> ParseResult:
    """Turn a workflow webhook body into one event (or one malformed item).

    `received_at` becomes the event's time. Raises `ParseError` when the body is not a
    JSON object, `properties` is not an object, an id (`objectId`, `hs_object_id`, `vid`,
    `portalId` ...) is not numeric, or `email` is not a string.
    """
    data = load_json(body)
    if not isinstance(data, Mapping):
        raise ParseError("", f"expected a JSON object, got {kind_of(data)}")
    nested = data.get("properties")
    if nested is not None and not isinstance(nested, Mapping):
        raise ParseError("properties", f"expected an object, got {kind_of(nested)}")
    flat = {key: value for key, value in data.items() if key not in _NOT_PROPERTIES}
    values = {key: _value(value) for key, value in {**flat, **(nested or {})}.items()}
    profile = _profile(data, values)
    account = _numeric(data, _ACCOUNT_KEYS)
    properties = _carried(values, property_events, own_prefix)
    try:
        event = parse_event(
            {
                "type": event_type.value,
                "profile": profile,
                "properties": properties,
                "context": {"account_id": account} if account else {},
            },
            received_at=received_at,
            source=SOURCE,
        )
    except EventError as exc:
        return ParseResult(malformed=(Malformed(0, exc.field, exc.message),))
    return ParseResult(events=(event,))


def _value(raw: Any) -> Any:
    """A property's value: legacy `{"value": ..., "versions": [...]}` unwrapped; None for
    anything that is not a scalar."""
    if isinstance(raw, Mapping):
        raw = raw.get("value")
    return None if isinstance(raw, Mapping | list) else raw


def _profile(data: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, str]:
    profile: dict[str, str] = {}
    hubspot_id = _numeric(data, _ID_KEYS) or _numeric(values, ("hs_object_id",))
    if hubspot_id:
        profile["hubspot_id"] = hubspot_id
    email = data.get("email")
    if email is None:
        email = values.get("email")
    if email is not None and not isinstance(email, str):
        raise ParseError("email", f"expected a string, got {kind_of(email)}")
    if email:
        profile["email"] = email
    return profile


def _numeric(data: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` present, as text; `ParseError` when it is not a whole number."""
    for key in keys:
        raw = data.get(key)
        if raw is None or raw == "":
            continue
        number = integer(raw)
        if number is None:
            raise ParseError(key, f"expected a numeric id, got {kind_of(raw)}")
        return str(number)
    return None


def _carried(
    values: Mapping[str, Any], mapping: Mapping[str, PropertyEvent], own_prefix: str
) -> dict[str, Any]:
    carried: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value == "" or name in _NOT_PROPERTIES:
            continue
        if name.lower().startswith(own_prefix.lower()):
            continue
        rule = mapping.get(name)
        carried[rule.field if rule else name] = value
    return carried
