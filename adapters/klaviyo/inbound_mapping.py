"""Klaviyo metric names and event properties -> our event types and canonical fields.

Shared by the flow and system webhook parsers. Lenient where Klaviyo templates are
sloppy: blank or "None" values count as missing, numbers may be strings ("$1,212.50"),
and `Items` may be a real list, JSON text or the Python repr a template renders
(`[{'ProductName': 'Jacket', ...}]`, read with `ast.literal_eval` up to a size limit).
Every failure is an `EventError` naming the field.
"""

from __future__ import annotations

import ast
import html
import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from connector.core.events import EventError, EventType

SOURCE = "klaviyo"
MAX_ITEMS_TEXT = 65_536
"""Longest `Items` text parsed: a 100-line cart renders well under 64 KiB."""
MAX_DEPTH = 16
"""Deepest nesting kept in a property value: deeper is not an e-commerce payload."""

DEFAULT_METRICS: Mapping[str, EventType] = MappingProxyType(
    {
        "Viewed Product": EventType.PRODUCT_VIEWED,
        "Added to Cart": EventType.CART_UPDATED,
        "Started Checkout": EventType.CHECKOUT_STARTED,
        "Placed Order": EventType.ORDER_PLACED,
        "Active on Site": EventType.SESSION_STARTED,
        "Back in Stock": EventType.BACK_IN_STOCK,
        "Subscribed to Back in Stock": EventType.BACK_IN_STOCK,
    }
)
"""Klaviyo metric display names; matched ignoring case, spaces and underscores."""

_BLANK = frozenset({"", "none", "null", "undefined"})
_NUMERIC = frozenset({"cart_value", "value", "price"})
_PROPERTY_ALIASES = MappingProxyType({
    "CheckoutURL": "checkout_url", "Items": "items", "OrderId": "order_id",
    "OrderID": "order_id", "ProductID": "product_id", "ProductName": "name",
    "Price": "price", "URL": "url", "ProductURL": "url", "ImageURL": "image_url",
    "SKU": "sku", "Brand": "brand", "Categories": "categories", "ItemNames": "item_names",
    "DiscountCode": "discount_code", "Currency": "currency", "$currency_code": "currency",
})  # fmt: skip
_ITEM_ALIASES = MappingProxyType({
    "ProductID": "product_id", "ProductName": "name", "ItemPrice": "price", "Price": "price",
    "Quantity": "quantity", "ImageURL": "image_url", "ProductURL": "url", "URL": "url",
    "SKU": "sku", "RowTotal": "row_total", "Categories": "categories", "Brand": "brand",
    "VariantName": "variant",
})  # fmt: skip
_VALUE_KEYS = frozenset({"$value", "Value", "value"})
_VALUE_FIELD = MappingProxyType(
    {
        EventType.CART_UPDATED: "cart_value",
        EventType.CHECKOUT_STARTED: "cart_value",
        EventType.CART_ABANDONED: "cart_value",
        EventType.PRODUCT_VIEWED: "price",
        EventType.BACK_IN_STOCK: "price",
    }
)


def metric_key(name: str) -> str:
    """A metric name reduced for matching: "Placed Order", "placed_order" -> "placed_order"."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower()).strip("_")


def event_type_of(name: str, metrics: Mapping[str, EventType]) -> EventType | None:
    """The type a metric maps to (a canonical type name maps to itself), or None."""
    key = metric_key(name)
    for metric, event_type in metrics.items():
        if metric_key(metric) == key:
            return event_type
    try:
        return EventType(key)
    except ValueError:
        return None


def blank(value: Any) -> bool:
    """Missing as far as a template is concerned: None, "", "None", "null"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _BLANK)


def canonical_properties(
    event_type: EventType, raw: Mapping[str, Any], *, max_items_text: int = MAX_ITEMS_TEXT
) -> dict[str, Any]:
    """Klaviyo-named properties renamed to ours.

    `$value` (or `value`) becomes `cart_value` for carts and checkouts, `value` for orders
    and `price` for product views. When two names give one field, our canonical name beats
    a Klaviyo alias, which beats `$value`. Other `$`-prefixed Klaviyo internals are left
    out; unknown names are kept as they are.
    """
    ranked: dict[str, tuple[int, Any]] = {}
    for key, value in raw.items():
        target, rank = _target(event_type, key)
        if target is None or blank(value):
            continue
        if target in ranked and ranked[target][0] > rank:
            continue
        where = f"properties.{key}"
        if target == "items":
            value = lenient_items(value, where, max_items_text)
        elif target in _NUMERIC:
            value = lenient_number(value)
        else:
            value = plain(value, where)
        ranked[target] = (rank, value)
    return {target: value for target, (_, value) in ranked.items()}


def _target(event_type: EventType, key: str) -> tuple[str | None, int]:
    """The canonical field for a property name and how strongly it claims it."""
    if key in _VALUE_KEYS:
        target = _VALUE_FIELD.get(event_type, "value")
        return target, 2 if key == target else 0
    if key in _PROPERTY_ALIASES:
        return _PROPERTY_ALIASES[key], 1
    return (None, 0) if key.startswith("$") else (key, 2)


def lenient_number(value: Any) -> Any:
    """ "$1,212.50" -> "1212.50"; anything else unchanged (the event model types it)."""
    if isinstance(value, str):
        return re.sub(r"[\s,$€£]", "", value)
    return value


def lenient_items(value: Any, where: str, max_text: int = MAX_ITEMS_TEXT) -> list[Any]:
    """Line items from a list, one object, JSON text or a Python repr, keys renamed."""
    if isinstance(value, str):
        value = _decode_items(value, where, max_text)
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        raise EventError(where, "expected a list of items")
    return [_item(raw, f"{where}[{index}]") for index, raw in enumerate(value)]


def _decode_items(text: str, where: str, max_text: int) -> Any:
    if len(text) > max_text:
        raise EventError(where, f"items text is {len(text)} characters, at most {max_text}")
    candidates = [text.strip()]
    if "&" in text:
        candidates.append(html.unescape(text.strip()))
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            pass
        try:
            return _literal(candidate, where)
        except EventError:
            pass
    raise EventError(where, "expected a list of items (JSON or a Python list literal)")


def python_literal(text: str, where: str = "") -> Any:
    """A Python literal (what a Klaviyo template renders for an object) as plain JSON data.

    Only literals are evaluated (`ast.literal_eval`), never code; callers bound the size.
    Raises `EventError` for text that is not a literal or not JSON-like data.
    """
    return plain(_literal(text, where), where)


def _literal(text: str, where: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError) as exc:
        raise EventError(where, "is not a Python literal") from exc


def _item(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise EventError(where, "expected an object")
    item: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise EventError(where, "item keys must be strings")
        if blank(value):
            continue
        target = _ITEM_ALIASES.get(key, key)
        if target == "price":
            value = lenient_number(value)
        if key == target or target not in item:
            item[target] = plain(value, f"{where}.{key}")
    return item


def plain(value: Any, where: str, depth: int = 0) -> Any:
    """`value` as plain JSON data (tuples become lists); `EventError` for anything else
    (sets, bytes, non-finite numbers, non-string keys, nesting deeper than MAX_DEPTH)."""
    if depth > MAX_DEPTH:
        raise EventError(where, f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EventError(where, "expected a finite number")
        return value
    if isinstance(value, list | tuple):
        return [plain(element, where, depth + 1) for element in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise EventError(where, "object keys must be strings")
        return {key: plain(element, where, depth + 1) for key, element in value.items()}
    raise EventError(where, f"expected JSON data, got a {type(value).__name__}")
