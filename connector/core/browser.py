"""Events from shoppers' browsers (the site snippet `dcb.js`), which nobody vouches for.

A browser event is read in two steps, so the edge can check the identity token between
them: `read_browser_event` validates the body (raises `ParseError` naming the field), then
`browser_event` builds the canonical `Event`. What a browser may say is narrower than what
the shop's server may say:

- only `BROWSER_EVENT_TYPES` (no orders, no erasure, no profile changes);
- the time is the server's: an `occurred_at` in the body is ignored;
- the profile is the identity the shop's server vouched for (a verified identity token)
  or, without one, only the anonymous browser id; the browser id is not linked to an
  identified profile, so two shoppers sharing a computer never mix;
- only the known commerce properties, no `context` (nothing that becomes a profile
  attribute), text at most `MAX_TEXT` characters, no links in text, and URLs only on the
  shop's own domains, so nobody can put a link into the shop's emails;
- the event id is namespaced by the browser id, so it can never collide with (and
  suppress as a duplicate) an event from another source or another browser.

The body::

    {"type": "cart_updated", "browser_id": "b-3f0c9a2e41d8", "event_id": "optional",
     "identity": "optional token signed by the shop's server",
     "properties": {"cart_value": 59.0, "currency": "EUR", "items": [...]}}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from connector.core.events import (
    Event,
    EventError,
    EventType,
    ProfileRef,
    format_time,
    parse_event,
    parse_properties,
)
from connector.core.inbound import ParseError, kind_of, load_json

#: The `source` of every event that came from a browser.
BROWSER_SOURCE = "browser"
#: What a browser may report: browsing, carts and checkout steps. Orders, erasure and
#: profile changes come only from the shop's server or the platforms.
BROWSER_EVENT_TYPES = (
    EventType.PRODUCT_VIEWED,
    EventType.CART_UPDATED,
    EventType.CHECKOUT_STARTED,
)
#: Properties a browser may send; each is typed as in `connector.core.events`.
BROWSER_PROPERTIES = frozenset(
    {"cart_value", "currency", "checkout_url", "items", "product_id", "sku", "name", "price",
     "url", "image_url", "variant", "category", "quantity"}
)  # fmt: skip
#: Line item fields a browser may send.
BROWSER_ITEM_FIELDS = frozenset(
    {"product_id", "sku", "name", "price", "quantity", "image_url", "url", "variant", "category"}
)
#: Fields holding a URL: each must be http(s) on one of the shop's domains.
URL_FIELDS = frozenset({"url", "image_url", "checkout_url"})
#: Longest text a browser may send in one field (product names, ids).
MAX_TEXT = 500
#: Most line items in one cart.
MAX_ITEMS = 100
#: Largest browser request body: one event is a few KiB at most.
MAX_BODY = 64 * 1024
#: A browser id: what `dcb.js` makes (a random UUID) or any similar opaque token.
BROWSER_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_CLIENT_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: Fields of a browser's body; `occurred_at` is accepted and ignored (the server's time counts).
_TOP_LEVEL = frozenset({"type", "browser_id", "event_id", "identity", "properties", "occurred_at"})


@dataclass(frozen=True, slots=True)
class BrowserEvent:
    """A browser's event, validated but not yet identified."""

    type: EventType
    browser_id: str
    properties: Mapping[str, Any]
    identity: str | None = None  # the token as sent; the edge verifies it
    client_event_id: str | None = None


def read_browser_event(body: bytes, *, shop_domains: Collection[str]) -> BrowserEvent:
    """Validate a browser's body; raises `ParseError` naming the field that is wrong.

    `shop_domains` are host names (lower case); a URL's host must be one of them or a
    subdomain of one.
    """
    data = load_json(body, max_bytes=MAX_BODY)
    if not isinstance(data, Mapping):
        raise ParseError("", f"expected one event object, got {kind_of(data)}")
    unknown = sorted(str(k) for k in data if k not in _TOP_LEVEL)
    if unknown:
        raise ParseError(unknown[0], "not accepted from a browser")
    event_type = _event_type(data.get("type"))
    browser_id = data.get("browser_id")
    if not isinstance(browser_id, str) or not BROWSER_ID.fullmatch(browser_id):
        raise ParseError("browser_id", "expected 8 to 64 letters, digits, '-' or '_'")
    identity = data.get("identity")
    if identity is not None and (not isinstance(identity, str) or not identity.strip()):
        raise ParseError("identity", "expected the token the shop's server signed")
    event_id = data.get("event_id")
    if event_id is not None and (
        not isinstance(event_id, str) or not _CLIENT_EVENT_ID.fullmatch(event_id)
    ):
        raise ParseError("event_id", "expected 1 to 64 letters, digits or '_.:-'")
    raw_properties = data.get("properties") or {}
    if not isinstance(raw_properties, Mapping):
        raise ParseError("properties", f"expected an object, got {kind_of(raw_properties)}")
    properties = _properties(raw_properties, frozenset(d.lower() for d in shop_domains))
    return BrowserEvent(event_type, browser_id, properties, identity, event_id)


def browser_event(
    event: BrowserEvent, *, identity: ProfileRef | None, received_at: datetime
) -> Event:
    """The canonical event: at `received_at`, for `identity` (a profile the shop's server
    vouched for) or else for the anonymous browser id."""
    profile = identity or ProfileRef(browser_id=event.browser_id)
    stamp = format_time(received_at)
    if event.client_event_id:
        seed = f"{event.browser_id}\0{event.client_event_id}"
    else:  # the same event from the same browser in the same millisecond is one event
        content = json.dumps(event.properties, sort_keys=True, default=str)
        seed = f"{event.browser_id}\0{event.type.value}\0{stamp}\0{content}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:32]
    raw = {
        "type": event.type.value,
        "event_id": f"{BROWSER_SOURCE}:{digest}",
        "occurred_at": stamp,
        "profile": profile.to_json(),
        "properties": dict(event.properties),
        "source": BROWSER_SOURCE,
    }
    try:
        return parse_event(raw, received_at=received_at, source=BROWSER_SOURCE)
    except EventError as exc:  # read_browser_event checked all of it; kept as a 400
        raise ParseError(exc.field, exc.message) from exc


def is_browser(event: Event | None) -> bool:
    """True for an event a browser sent (which may not create platform profiles)."""
    return event is not None and event.source == BROWSER_SOURCE


def _event_type(raw: Any) -> EventType:
    allowed = ", ".join(t.value for t in BROWSER_EVENT_TYPES)
    if not isinstance(raw, str):
        raise ParseError("type", f"is required: one of {allowed}")
    for kind in BROWSER_EVENT_TYPES:
        if raw == kind.value:
            return kind
    raise ParseError("type", f"{raw[:40]!r} is not accepted from a browser (one of {allowed})")


def _properties(raw: Mapping[str, Any], domains: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"properties.{key}"
        if key not in BROWSER_PROPERTIES:
            raise ParseError(where, "not accepted from a browser")
        if value is None:
            continue
        if key == "items":
            out[key] = _items(value, domains)
        else:
            out[key] = _value(key, value, where, domains)
    try:  # the same typing as every other source (numbers, currency codes, ...)
        return parse_properties(out)
    except EventError as exc:
        raise ParseError(exc.field, exc.message) from exc


def _items(value: Any, domains: frozenset[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ParseError("properties.items", f"expected a list of items, got {kind_of(value)}")
    if len(value) > MAX_ITEMS:
        raise ParseError("properties.items", f"{len(value)} items, at most {MAX_ITEMS}")
    items = []
    for index, item in enumerate(value):
        where = f"properties.items[{index}]"
        if not isinstance(item, Mapping):
            raise ParseError(where, f"expected an object, got {kind_of(item)}")
        clean: dict[str, Any] = {}
        for key, field_value in item.items():
            if key not in BROWSER_ITEM_FIELDS:
                raise ParseError(f"{where}.{key}", "not accepted from a browser")
            if field_value is not None:
                clean[key] = _value(key, field_value, f"{where}.{key}", domains)
        items.append(clean)
    return items


def _value(key: str, value: Any, where: str, domains: frozenset[str]) -> Any:
    if isinstance(value, list | Mapping):
        raise ParseError(where, f"expected a single value, got {kind_of(value)}")
    if not isinstance(value, str):
        return value  # numbers and booleans: typed by parse_event
    if len(value) > MAX_TEXT:
        raise ParseError(where, f"{len(value)} characters, at most {MAX_TEXT}")
    if key in URL_FIELDS:
        return check_url(value, where, domains)
    if "://" in value or "www." in value.lower():
        raise ParseError(where, "a link is accepted only in a URL field")
    return value


def check_url(value: str, where: str, domains: Collection[str]) -> str:
    """`value` if it is an http(s) URL on one of `domains` (or a subdomain of one); raises
    `ParseError` saying why not."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower().rstrip(".")
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise ParseError(where, "not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise ParseError(where, "expected an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ParseError(where, "a URL with a user name or password is not accepted")
    if not any(host == d or host.endswith("." + d) for d in domains):
        raise ParseError(where, f"{host} is not one of the shop's domains")
    return text
