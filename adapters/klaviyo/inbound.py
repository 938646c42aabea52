"""Klaviyo webhook bodies -> canonical events.

- Flow webhooks (`parse_flow_webhook`): the JSON body a marketer writes in a flow's Webhook
  action (docs/inbound.md has the bodies to paste). One object: `metric` (a Klaviyo metric
  name such as "Started Checkout", or one of our event types), the profile (`profile_id`,
  `email`, `external_id`; `$id`/`$email`/`$external_id` also work), an optional
  `event_id` (or `$event_id`), an optional time (`occurred_at`/`time`), optional `context`,
  and the event's properties under our names or Klaviyo's (`$value`, `CheckoutURL`,
  `Items` ...). Dedup key: `klaviyo-flow:<type>:<event_id>`, else a hash of the content.
- System webhooks (`parse_system_webhook`): `{"data": [{"external_id", "topic", "payload":
  <GET /api/events/{id} document>}], "meta": {"klaviyo_account_id", ...}}`. The metric is
  the name of an included metric resource, else the topic's last segment
  (`event:klaviyo.placed_order` -> "placed_order"). Dedup key: `klaviyo:<external_id>`.
  The profile is the event's profile relationship, as `ProfileRef(klaviyo_id=...)`.

Metrics that `metrics` does not map are dropped, with the reason.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.klaviyo.inbound_mapping import (
    DEFAULT_METRICS,
    MAX_ITEMS_TEXT,
    SOURCE,
    blank,
    canonical_properties,
    event_type_of,
    plain,
    python_literal,
)
from connector.core.events import EventError, EventType, as_text, parse_event
from connector.core.inbound import (
    Dropped,
    InboundItem,
    Malformed,
    ParseError,
    ParseResult,
    kind_of,
    load_json,
)

__all__ = [
    "DEFAULT_METRICS",
    "MAX_FLOW_LITERAL",
    "MAX_ITEMS_TEXT",
    "parse_flow_webhook",
    "parse_system_webhook",
]

MAX_FLOW_LITERAL = 262_144
"""Largest flow body read as a Python literal (a flow body is a few KiB)."""
_METRIC_KEYS = ("metric", "type", "event")
_PROFILE_KEYS = {
    "klaviyo_id": ("profile_id", "klaviyo_id", "$id", "KlaviyoID"),
    "email": ("email", "$email"),
    "external_id": ("external_id", "$external_id"),
}
_ID_KEYS = ("event_id", "$event_id")
_TIME_KEYS = ("occurred_at", "time", "timestamp", "datetime")
_NOT_PROPERTIES = frozenset({
    *_METRIC_KEYS, *_ID_KEYS, *_TIME_KEYS, "context",
    *(key for keys in _PROFILE_KEYS.values() for key in keys),
})  # fmt: skip


# --- flow webhooks --------------------------------------------------------------------------


def parse_flow_webhook(
    body: bytes,
    *,
    received_at: datetime,
    metrics: Mapping[str, EventType] = DEFAULT_METRICS,
    max_items_text: int = MAX_ITEMS_TEXT,
) -> ParseResult:
    """Turn one flow Webhook-action body into one event, drop or malformed item.

    `received_at` stands in for a missing time. A body that is not JSON but a Python dict
    literal (what `"items": {{ event.Items }}` renders to, up to `MAX_FLOW_LITERAL` bytes),
    possibly HTML-escaped by the template, is read as such. Raises `ParseError` when the
    body is neither a JSON object nor such a literal, or its `metric` is not a string.
    """
    data = _flow_body(body)
    if not isinstance(data, Mapping):
        raise ParseError("", f"expected a JSON object, got {kind_of(data)}")
    for key in _METRIC_KEYS:
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise ParseError(key, f"expected a metric name, got {kind_of(data[key])}")
    try:
        item = _flow_event(data, received_at, metrics, max_items_text)
    except EventError as exc:
        item = Malformed(0, exc.field, exc.message)
    return ParseResult.collect([item])


def _flow_body(body: bytes) -> Any:
    try:
        return load_json(body)
    except ParseError as not_json:
        if len(body) > MAX_FLOW_LITERAL:
            raise
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise not_json from None
        for candidate in (text, html.unescape(text)) if "&" in text else (text,):
            with contextlib.suppress(EventError):
                data = python_literal(candidate)
                if isinstance(data, Mapping):
                    return data
        raise not_json from None


def _flow_event(
    data: Mapping[str, Any],
    received_at: datetime,
    metrics: Mapping[str, EventType],
    max_items_text: int,
) -> InboundItem:
    name = _first(data, _METRIC_KEYS)
    if name is None:
        raise EventError("metric", "is required")
    event_type = event_type_of(name, metrics)
    if event_type is None:
        return Dropped(0, f"metric {name!r} is not mapped to an event type")
    rest = {key: value for key, value in data.items() if key not in _NOT_PROPERTIES}
    sent_id = _first(data, _ID_KEYS)
    context = data.get("context")
    return parse_event(
        {
            "type": event_type.value,
            "event_id": f"klaviyo-flow:{event_type.value}:{as_text(sent_id, 'event_id')}"
            if sent_id is not None
            else None,
            "occurred_at": _first(data, _TIME_KEYS),
            "profile": _flow_profile(data),
            "properties": canonical_properties(event_type, rest, max_items_text=max_items_text),
            "context": plain(context, "context") if isinstance(context, Mapping) else context,
        },
        received_at=received_at,
        source=SOURCE,
    )


def _flow_profile(data: Mapping[str, Any]) -> dict[str, Any]:
    profile: dict[str, Any] = {}
    for kind, keys in _PROFILE_KEYS.items():
        value = _first(data, keys)
        if value is not None:
            profile[kind] = as_text(value, keys[0])
    return profile


def _first(data: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The first of `keys` with a non-blank value, or None."""
    for key in keys:
        value = data.get(key)
        if not blank(value):
            return value
    return None


# --- system webhooks ------------------------------------------------------------------------


def parse_system_webhook(
    body: bytes,
    *,
    received_at: datetime,
    metrics: Mapping[str, EventType] = DEFAULT_METRICS,
    max_items_text: int = MAX_ITEMS_TEXT,
) -> ParseResult:
    """Turn a system webhook batch into events, drops and malformed items.

    The account (`meta.klaviyo_account_id`) goes into `Event.context["account_id"]`.
    `received_at` stands in for an event without a time. Raises `ParseError` when the body
    is not an object with a `data` array of objects, or a `topic`, `external_id`,
    `payload` or `meta` has the wrong JSON type.
    """
    data = load_json(body)
    if not isinstance(data, Mapping):
        raise ParseError("", f"expected a JSON object, got {kind_of(data)}")
    batch = data.get("data")
    if not isinstance(batch, list):
        raise ParseError("data", f"expected an array of events, got {kind_of(batch)}")
    meta = data.get("meta")
    if meta is not None and not isinstance(meta, Mapping):
        raise ParseError("meta", f"expected an object, got {kind_of(meta)}")
    account = (meta or {}).get("klaviyo_account_id")
    if account is not None and not isinstance(account, str):
        raise ParseError("meta.klaviyo_account_id", f"expected a string, got {kind_of(account)}")
    for index, raw in enumerate(batch):
        _check_shape(raw, f"data[{index}]")
    return ParseResult.collect(
        _system_item(index, raw, account, received_at, metrics, max_items_text)
        for index, raw in enumerate(batch)
    )


def _check_shape(raw: Any, where: str) -> None:
    if not isinstance(raw, Mapping):
        raise ParseError(where, f"expected an object, got {kind_of(raw)}")
    checks = (("topic", str), ("external_id", str | int), ("payload", Mapping))
    for key, expected in checks:
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, expected)):
            raise ParseError(f"{where}.{key}", f"has the wrong type: {kind_of(value)}")


def _system_item(
    index: int,
    raw: Mapping[str, Any],
    account: str | None,
    received_at: datetime,
    metrics: Mapping[str, EventType],
    max_items_text: int,
) -> InboundItem:
    try:
        return _system_event(index, raw, account, received_at, metrics, max_items_text)
    except EventError as exc:
        return Malformed(index, exc.field, exc.message)


def _system_event(
    index: int,
    raw: Mapping[str, Any],
    account: str | None,
    received_at: datetime,
    metrics: Mapping[str, EventType],
    max_items_text: int,
) -> InboundItem:
    topic = raw.get("topic")
    if not topic:
        raise EventError("topic", "is required")
    payload = raw.get("payload") or {}
    name = _included_metric_name(payload) or topic.rsplit(".", 1)[-1].removeprefix("event:")
    event_type = event_type_of(name, metrics)
    if event_type is None:
        return Dropped(index, f"topic {topic!r} (metric {name!r}) is not mapped")
    external_id = raw.get("external_id")
    if blank(external_id):
        raise EventError("external_id", "is required")
    event = _object(payload, "data", "payload.data")
    attributes = _object(event, "attributes", "payload.data.attributes")
    profile_id = _profile_id(event)
    props = _object(attributes, "event_properties", "payload.data.attributes.event_properties")
    return parse_event(
        {
            "type": event_type.value,
            "event_id": f"{SOURCE}:{as_text(external_id, 'external_id')}",
            "occurred_at": attributes.get("datetime") or attributes.get("timestamp"),
            "profile": {"klaviyo_id": profile_id},
            "properties": canonical_properties(event_type, props, max_items_text=max_items_text),
            "context": {"account_id": account} if account else {},
        },
        received_at=received_at,
        source=SOURCE,
    )


def _profile_id(event: Mapping[str, Any]) -> str:
    where = "payload.data.relationships"
    relationships = _object(event, "relationships", where)
    profile = _object(
        _object(relationships, "profile", f"{where}.profile"), "data", f"{where}.profile.data"
    )
    profile_id = profile.get("id")
    if blank(profile_id):
        raise EventError(f"{where}.profile.data.id", "is required")
    return as_text(profile_id, f"{where}.profile.data.id")


def _included_metric_name(payload: Mapping[str, Any]) -> str | None:
    """The name of the metric resource `included` beside the event, when there is one."""
    included = payload.get("included")
    if not isinstance(included, list):
        return None
    for resource in included:
        if isinstance(resource, Mapping) and resource.get("type") == "metric":
            attributes = resource.get("attributes")
            name = attributes.get("name") if isinstance(attributes, Mapping) else None
            if isinstance(name, str) and name.strip():
                return name
    return None


def _object(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(where, "expected an object")
    return value
