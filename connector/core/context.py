"""Per-profile context: what the connector knows of a shopper, folded from events.

The stored context is a plain JSON-able dict, so any store can keep it. `fold` adds one
event to it; `view` turns it into what rules and templates read as `profile.*` at a given
moment (windows such as "purchases in the last 90 days" depend on that moment).

Order: each field remembers the time of the event that set it, and an older event never
overwrites a newer value, so events take effect in `occurred_at` order whatever order
they arrive in (equal times: the later arrival wins). Counters are kept per day, never by
rescanning history. An event already folded in (same `event_id`) changes nothing.

Fetched data: `absorb` folds fields read from a platform (late and missing data) in the
same way, stamped with the platform's time, and notes in `fetched` until when each one
counts as fresh (`fetch_state`). An event that sets a field makes it the event's again; a
`profile_updated` or `profile_created` event (the platform says the profile changed) makes
every fetched field stale, so a rule that `requires` one fetches it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.core.events import Event, EventType, format_time, parse_time

#: How long purchases are counted by day; the longest window a view can ask for.
PURCHASE_WINDOW_DAYS = 90
#: How many purchased product ids a profile remembers (the newest).
PURCHASED_PRODUCTS = 100
#: How many recent event ids a profile remembers to make folding idempotent. Duplicates
#: older than this are caught by the pipeline's dedup store, which keeps keys for 7 days.
SEEN_EVENTS = 64
#: Default for how long a freshly created profile counts as new.
DEFAULT_NEW_FOR = timedelta(days=30)

#: Fields of the view that custom attributes may not shadow.
RESERVED = frozenset(
    {
        "is_new", "logged_in", "purchases_90d", "lifetime_orders", "last_order_at",
        "cart_value", "cart_items", "cart", "checkout_url", "last_viewed_product", "city",
        "country", "session_depth", "updated_at", "created_at", "identifiers",
        "purchased_products",
    }
)  # fmt: skip

_CONTEXT_FIELDS = ("logged_in", "city", "country", "session_depth")
#: Context keys that describe the request, not the shopper (the platform account).
_NOT_PROFILE = frozenset({"account_id"})
_CREATED_ATTRIBUTES = ("created_at", "createdate", "created")
#: The context key of the fetched fields' freshness: {field: until (ISO time), "" = stale}.
FETCHED = "fetched"
_CHANGES = frozenset({EventType.PROFILE_UPDATED, EventType.PROFILE_CREATED})


def fold(context: Mapping[str, Any] | None, event: Event) -> dict[str, Any]:
    """A new context with `event` folded in; `context` is not modified."""
    state = _copy(context)
    seen: list[str] = state.setdefault("seen_events", [])
    if event.event_id in seen:
        return state
    seen.append(event.event_id)
    del seen[:-SEEN_EVENTS]
    at = _stamp(event.occurred_at)
    _identify(state, event)
    if event.type in _CHANGES and state.get(FETCHED):
        state[FETCHED] = dict.fromkeys(state[FETCHED], "")
    stamps: dict[str, str] = state.setdefault("stamps", {})
    for name, value in event.context.items():
        if name in _NOT_PROFILE:
            continue
        _set(state, stamps, name if name in _CONTEXT_FIELDS else f"attributes.{name}", value, at)
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(state, stamps, event, at)
    if at > state.get("updated_at", ""):
        state["updated_at"] = at
    return state


#: The containers `fold` changes in place; everything else it replaces whole, so copying
#: these one level deep leaves the caller's context untouched (far cheaper than deepcopy).
_MUTATED = ("seen_events", "identifiers", "stamps", "attributes", "purchases_by_day", FETCHED)


def _copy(context: Mapping[str, Any] | None) -> dict[str, Any]:
    state = dict(context) if context else {}
    for name in _MUTATED:
        value = state.get(name)
        if isinstance(value, list):
            state[name] = list(value)
        elif isinstance(value, dict):
            state[name] = dict(value)
    return state


def view(
    context: Mapping[str, Any], now: datetime, *, new_for: timedelta = DEFAULT_NEW_FOR
) -> dict[str, Any]:
    """The profile as rules and templates see it at `now`.

    Fields the connector does not know are absent (not None), so a rule can tell
    "missing" from a value. `purchases_90d` is known once order history is: after an
    order, a `profile_created` event, or a platform-reported order count.
    """
    out: dict[str, Any] = {
        k: v for k, v in (context.get("attributes") or {}).items() if k not in RESERVED
    }
    for name in (*_CONTEXT_FIELDS, "cart_value", "cart_items", "checkout_url", "cart",
                 "last_viewed_product", "last_order_at", "updated_at", "created_at",
                 "purchased_products"):  # fmt: skip
        if name in context:
            out[name] = context[name]
    out["identifiers"] = dict(context.get("identifiers") or {})
    if context.get("orders_known"):
        out["lifetime_orders"] = context.get("lifetime_orders", 0)
        out["purchases_90d"] = purchases_within(context, now, PURCHASE_WINDOW_DAYS)
    created = context.get("created_at")
    if created is not None:
        young = now - parse_time(created, "created_at") <= new_for
        out["is_new"] = young and not context.get("lifetime_orders", 0)
    elif context.get("orders_known") and context.get("lifetime_orders", 0) > 0:
        out["is_new"] = False
    return out


def purchases_within(context: Mapping[str, Any], now: datetime, days: int) -> int:
    """Orders on the `days` calendar days (UTC) ending with `now`'s."""
    first = (now - timedelta(days=days - 1)).date().isoformat()
    last = now.date().isoformat()
    by_day: Mapping[str, int] = context.get("purchases_by_day") or {}
    return sum(n for day, n in by_day.items() if first <= day <= last)


def fetch_state(context: Mapping[str, Any], field: str, now: datetime) -> str | None:
    """ "fresh" while a value fetched for `field` (or the platform's word that it has none)
    counts, "stale" after its TTL or a profile change, None when it was never fetched."""
    until = (context.get(FETCHED) or {}).get(field)
    if until is None:
        return None
    return "fresh" if until and now < parse_time(until, FETCHED) else "stale"


def absorb(
    context: Mapping[str, Any] | None,
    values: Mapping[str, Any],
    asked: Sequence[str],
    *,
    stamp: datetime,
    now: datetime,
    fresh_until: datetime,
) -> dict[str, Any]:
    """A new context with the fields fetched from a platform folded in.

    `asked` are the fields that were read (a derived one such as `is_new` included);
    `values` those the platform had. Each value is set as of `stamp` (the platform's last
    change, never later than `now`), so a newer event's value stays; every asked field is
    fresh until `fresh_until`, those the platform lacks included (it has been looked at).
    """
    state = _copy(context)
    stamps: dict[str, str] = state.setdefault("stamps", {})
    at = _stamp(min(stamp, now))
    for name, value in values.items():
        if value is None:
            continue
        if name == "created_at":
            with contextlib.suppress(ValueError):  # an unreadable date tells us nothing
                created = parse_time(value, name)
                known = state.get("created_at")
                if known is None or created < parse_time(known, "created_at"):
                    state["created_at"] = format_time(created)
            continue
        _set(state, stamps, name if name in _CONTEXT_FIELDS else f"attributes.{name}", value, at)
    fetched: dict[str, str] = state.setdefault(FETCHED, {})
    for name in {*asked, *values}:
        fetched[name] = format_time(fresh_until)
    updated = state.get("updated_at")
    if updated is None or parse_time(updated, "updated_at") < now:
        state["updated_at"] = _stamp(now)
    return state


def _stamp(moment: datetime) -> str:
    """A field's stamp: UTC to the millisecond, always the same width, so that stamps
    compare as text in time order (`format_time` drops a zero fraction, and `.5Z` would
    sort before `Z` of the same second)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def first_identifier(context: Mapping[str, Any]) -> str | None:
    """`kind:value` of the identifier the profile was first seen with; never changes."""
    value = context.get("first_identifier")
    return value if isinstance(value, str) else None


# --- folding, per event type ---------------------------------------------------------------


def _identify(state: dict[str, Any], event: Event) -> None:
    ids: dict[str, str] = state.setdefault("identifiers", {})
    for kind, value in event.profile.identifiers():
        ids.setdefault(kind, value)
    if "first_identifier" not in state:
        kind, value = event.profile.first()
        state["first_identifier"] = f"{kind}:{value}"


def _set(state: dict[str, Any], stamps: dict[str, str], name: str, value: Any, at: str) -> bool:
    """Set `name` (`attributes.x` for a custom one) unless a newer event already set it."""
    if stamps.get(name, "") > at:
        return False
    stamps[name] = at
    fetched = state.get(FETCHED)
    if fetched:
        fetched.pop(name.removeprefix("attributes."), None)  # the event's value now
    if name.startswith("attributes."):
        state.setdefault("attributes", {})[name.removeprefix("attributes.")] = value
    else:
        state[name] = value
    return True


def _cart(state: dict[str, Any], stamps: dict[str, str], event: Event, at: str) -> None:
    if stamps.get("cart", "") > at or state.get("last_order_at", "") > at:
        return
    props = event.properties
    raw_items = props.get("items")
    items = [i for i in raw_items if isinstance(i, Mapping)] if isinstance(raw_items, list) else []
    value = _number(props.get("cart_value"))
    if value is None:
        value = sum((_number(i.get("price")) or 0) * _quantity(i) for i in items)
    stamps["cart"] = at
    state["cart_value"] = float(value)
    state["cart_items"] = sum(_quantity(i) for i in items)
    state["cart"] = {"items": items, "currency": props.get("currency"), "updated_at": at}
    if "checkout_url" in props:
        state["checkout_url"] = props["checkout_url"]


def _number(value: Any) -> float | None:
    """A number from a typed event field; anything else counts as absent."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _quantity(item: Any) -> int:
    quantity = _number(item.get("quantity")) if isinstance(item, Mapping) else None
    return int(quantity) if quantity is not None else 1


def _order(state: dict[str, Any], stamps: dict[str, str], event: Event, at: str) -> None:
    state["orders_known"] = True
    state["lifetime_orders"] = int(state.get("lifetime_orders", 0)) + 1
    day = event.occurred_at.date().isoformat()
    by_day: dict[str, int] = state.setdefault("purchases_by_day", {})
    by_day[day] = by_day.get(day, 0) + 1
    latest = datetime.fromisoformat(max(by_day))  # prune relative to the newest order
    cutoff = (latest - timedelta(days=PURCHASE_WINDOW_DAYS)).date().isoformat()
    for old in [d for d in by_day if d < cutoff]:
        del by_day[old]
    _purchased(state, event)
    if at >= state.get("last_order_at", ""):
        state["last_order_at"] = at
        state["last_order"] = dict(event.properties)
    if stamps.get("cart", "") <= at:
        stamps["cart"] = at
        state.update(cart_value=0.0, cart_items=0, cart={"items": [], "updated_at": at})
        state.pop("checkout_url", None)


def _purchased(state: dict[str, Any], event: Event) -> None:
    """Remember the products an order bought (the newest `PURCHASED_PRODUCTS`), so a block
    about a product can stop holding once it is bought."""
    items = event.properties.get("items")
    found = [event.properties.get("product_id")]
    if isinstance(items, Sequence) and not isinstance(items, str):
        found += [item.get("product_id") for item in items if isinstance(item, Mapping)]
    ids = [str(i) for i in found if isinstance(i, str | int) and not isinstance(i, bool)]
    if ids:
        known = [p for p in state.get("purchased_products", []) if p not in ids]
        state["purchased_products"] = [*known, *ids][-PURCHASED_PRODUCTS:]


def _viewed(state: dict[str, Any], stamps: dict[str, str], event: Event, at: str) -> None:
    product = {k: event.properties[k] for k in ("product_id", "name", "price", "url",
               "image_url", "variant") if k in event.properties}  # fmt: skip
    _set(state, stamps, "last_viewed_product", product, at)
    if "session_depth" not in event.context and stamps.get("session_depth", "") <= at:
        state["session_depth"] = int(state.get("session_depth", 0)) + 1
        stamps["session_depth"] = at


def _session(state: dict[str, Any], stamps: dict[str, str], event: Event, at: str) -> None:
    if "session_depth" not in event.context:
        _set(state, stamps, "session_depth", 1, at)


def _created(state: dict[str, Any], stamps: dict[str, str], event: Event, at: str) -> None:
    state.setdefault("created_at", at)
    if state["created_at"] > at:
        state["created_at"] = at
    state.setdefault("lifetime_orders", 0)
    state["orders_known"] = True
    _attributes(state, stamps, event, at)


def _attributes(state: dict[str, Any], stamps: dict[str, str], event: Event, at: str) -> None:
    """A profile update: custom attributes, and a creation date the platform reports."""
    for name, value in event.properties.items():
        if name in _CREATED_ATTRIBUTES and "created_at" not in state:
            with contextlib.suppress(ValueError):  # an unreadable date tells us nothing
                state["created_at"] = format_time(parse_time(value, name))
            continue
        if name in _CONTEXT_FIELDS:
            _set(state, stamps, name, value, at)
        elif name not in RESERVED:
            _set(state, stamps, f"attributes.{name}", value, at)


_HANDLERS = {
    EventType.CART_UPDATED: _cart,
    EventType.CHECKOUT_STARTED: _cart,
    EventType.ORDER_PLACED: _order,
    EventType.PRODUCT_VIEWED: _viewed,
    EventType.SESSION_STARTED: _session,
    EventType.PROFILE_CREATED: _created,
    EventType.PROFILE_UPDATED: _attributes,
}
