"""HubSpot webhook bodies -> canonical events.

Two bodies arrive from HubSpot (verify them first with `webhooks.signatures`):

- App webhooks (`parse_app_webhook`): a JSON array of at most 100 notifications, each
  naming its kind in `subscriptionType` (or `eventType`). `contact.creation` becomes
  `profile_created`; `contact.propertyChange` becomes the event type the account maps from
  that property (`property_events`, e.g. `cart_value` -> `cart_updated`) or else
  `profile_updated` carrying the property; `contact.deletion` and
  `contact.privacyDeletion` become an `EraseRequest`. The newer generic `object.*` kinds
  count as `contact.*` for contacts (`objectTypeId` "0-1"). Changes to our own `dcb_*`
  properties (echoes of our writes) and every other kind are dropped, with the reason.
- Workflow "Send a webhook" actions (`parse_workflow_webhook`): see `inbound_workflow.py`.

The dedup key of an app notification is `hubspot:<portalId>:<subscriptionId>:<eventId>:
<occurredAt>`, which a retry (a higher `attemptNumber`) repeats. The portal id goes into
`Event.context["account_id"]` (and `EraseRequest.account_id`): one public app serves every
installing portal, so the body names the account.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.hubspot.inbound_mapping import (
    DEFAULT_PROPERTY_EVENTS,
    OWN_PREFIX,
    SOURCE,
    PropertyEvent,
    integer,
)
from adapters.hubspot.inbound_workflow import parse_workflow_webhook
from connector.core.events import Event, EventError, EventType, ProfileRef, format_time, parse_event
from connector.core.inbound import (
    Dropped,
    EraseRequest,
    InboundItem,
    Malformed,
    ParseError,
    ParseResult,
    kind_of,
    load_json,
)

__all__ = [
    "DEFAULT_PROPERTY_EVENTS",
    "MAX_APP_EVENTS",
    "OWN_PREFIX",
    "PropertyEvent",
    "parse_app_webhook",
    "parse_workflow_webhook",
]

MAX_APP_EVENTS = 100
"""HubSpot batches at most 100 notifications per request."""
CONTACT_OBJECT_TYPE = "0-1"

_INTEGER_FIELDS = (
    "objectId", "eventId", "subscriptionId", "portalId", "appId", "occurredAt", "attemptNumber"
)  # fmt: skip
_TEXT_FIELDS = ("subscriptionType", "eventType", "propertyName", "changeSource", "objectTypeId")
_ERASE_KINDS = frozenset({"contact.deletion", "contact.privacyDeletion"})


def parse_app_webhook(
    body: bytes,
    *,
    received_at: datetime,
    property_events: Mapping[str, PropertyEvent] = DEFAULT_PROPERTY_EVENTS,
    own_prefix: str = OWN_PREFIX,
    max_events: int = MAX_APP_EVENTS,
) -> ParseResult:
    """Turn an app webhook body into events, erase requests, drops and malformed items.

    `received_at` is unused (every notification carries its own `occurredAt`); it keeps
    the signature the same as the other parsers'. Raises `ParseError` when the body is
    not JSON, not an array of at most `max_events` objects, or an object's fields have
    the wrong JSON types (a non-string `subscriptionType`, a non-numeric `objectId` ...).
    """
    data = load_json(body)
    if not isinstance(data, list):
        raise ParseError("", f"expected a JSON array of notifications, got {kind_of(data)}")
    if len(data) > max_events:
        raise ParseError("", f"{len(data)} notifications, at most {max_events} expected")
    for index, raw in enumerate(data):
        _check_shape(raw, f"[{index}]")
    return ParseResult.collect(
        _notification(index, raw, property_events, own_prefix) for index, raw in enumerate(data)
    )


def _check_shape(raw: Any, where: str) -> None:
    if not isinstance(raw, Mapping):
        raise ParseError(where, f"expected an object, got {kind_of(raw)}")
    for name in _INTEGER_FIELDS:
        value = raw.get(name)
        if value is not None and integer(value) is None:
            raise ParseError(f"{where}.{name}", f"expected a number, got {kind_of(value)}")
    for name in _TEXT_FIELDS:
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise ParseError(f"{where}.{name}", f"expected a string, got {kind_of(value)}")
    value = raw.get("propertyValue")
    if isinstance(value, list | dict):
        raise ParseError(f"{where}.propertyValue", f"expected a string, got {kind_of(value)}")


def _notification(
    index: int, raw: Mapping[str, Any], mapping: Mapping[str, PropertyEvent], own_prefix: str
) -> InboundItem:
    try:
        return _classify(index, raw, mapping, own_prefix)
    except EventError as exc:
        return Malformed(index, exc.field, exc.message)


def _classify(
    index: int, raw: Mapping[str, Any], mapping: Mapping[str, PropertyEvent], own_prefix: str
) -> InboundItem:
    kind = _contact_kind(raw)
    if kind is None:
        return Dropped(index, f"subscription type {_kind_name(raw)!r} is not used")
    key, occurred_at, account = _identity(raw)
    profile = ProfileRef(hubspot_id=str(_required_integer(raw, "objectId")))
    if kind in _ERASE_KINDS:
        return EraseRequest(profile, SOURCE, key, occurred_at, account)
    if kind == "contact.creation":
        return _event(EventType.PROFILE_CREATED, key, occurred_at, profile, {}, account)
    if kind != "contact.propertyChange":
        return Dropped(index, f"subscription type {kind!r} is not used")
    name = raw.get("propertyName")
    if not name:
        raise EventError("propertyName", "is required for contact.propertyChange")
    if name.lower().startswith(own_prefix.lower()):
        return Dropped(index, f"{name} is the connector's own property (an echo of our write)")
    value = raw.get("propertyValue")
    rule = mapping.get(name)
    if rule is None:
        return _event(EventType.PROFILE_UPDATED, key, occurred_at, profile, {name: value}, account)
    if value is None or value == "":
        return Dropped(index, f"{name} was cleared: no {rule.event_type.value} to report")
    return _event(rule.event_type, key, occurred_at, profile, {rule.field: value}, account)


def _contact_kind(raw: Mapping[str, Any]) -> str | None:
    """`contact.*` for a contact notification (either naming scheme), else None."""
    kind = _kind_name(raw)
    if kind.startswith("contact."):
        return kind
    if kind.startswith("object.") and raw.get("objectTypeId") == CONTACT_OBJECT_TYPE:
        return "contact." + kind.removeprefix("object.")
    return None


def _kind_name(raw: Mapping[str, Any]) -> str:
    kind = raw.get("subscriptionType") or raw.get("eventType")
    if not kind:
        raise EventError("subscriptionType", "is required")
    return str(kind)


def _identity(raw: Mapping[str, Any]) -> tuple[str, datetime, str]:
    portal = _required_integer(raw, "portalId")
    subscription = _required_integer(raw, "subscriptionId")
    event = _required_integer(raw, "eventId")
    occurred = _required_integer(raw, "occurredAt")
    try:
        occurred_at = datetime.fromtimestamp(occurred / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise EventError("occurredAt", f"time out of range: {occurred}") from exc
    return f"{SOURCE}:{portal}:{subscription}:{event}:{occurred}", occurred_at, str(portal)


def _event(
    event_type: EventType,
    key: str,
    occurred_at: datetime,
    profile: ProfileRef,
    properties: Mapping[str, Any],
    account: str,
) -> Event:
    return parse_event(
        {
            "type": event_type.value,
            "event_id": key,
            "occurred_at": format_time(occurred_at),
            "profile": profile.to_json(),
            "properties": properties,
            "context": {"account_id": account},
        },
        received_at=occurred_at,
        source=SOURCE,
    )


def _required_integer(raw: Mapping[str, Any], name: str) -> int:
    value = integer(raw.get(name))
    if value is None:
        raise EventError(name, "is required")
    return value
