"""Klaviyo flow and system webhook bodies -> canonical events."""

from __future__ import annotations

import contextlib
import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.klaviyo.inbound import DEFAULT_METRICS, parse_flow_webhook, parse_system_webhook
from connector.core.events import Event, EventType, ProfileRef, parse_event
from connector.core.inbound import ParseError, ParseResult

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "inbound.md"
RECEIVED = datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC)
PROFILE_ID = "01HXYZPROFILE000000000001"
DEEP: Any = json.loads("[" * 20 + "]" * 20)


def flow(body: Any, **options: Any) -> ParseResult:
    return parse_flow_webhook(json.dumps(body).encode(), received_at=RECEIVED, **options)


def system(*items: dict[str, Any], account: str | None = "AbC123") -> ParseResult:
    body = {"data": list(items), "meta": {"klaviyo_account_id": account,
                                          "klaviyo_webhook_id": "wh-1",
                                          "timestamp": "2026-11-28T10:00:01+00:00"}}
    return parse_system_webhook(json.dumps(body).encode(), received_at=RECEIVED)


def only_event(result: ParseResult) -> Event:
    assert not result.malformed and not result.dropped and not result.erasures, result
    assert len(result.events) == 1
    return result.events[0]


def assert_canonical(event: Event) -> None:
    assert parse_event(event.to_json(), received_at=RECEIVED) == event


def system_event(metric: str | None, properties: dict[str, Any], *, external_id: Any = "4L3cw",
                 topic: str = "event:klaviyo.placed_order",
                 profile_id: Any = PROFILE_ID) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "data": {
            "type": "event", "id": "4L3cw",
            "attributes": {"timestamp": 1795860000, "datetime": "2026-11-28T10:00:00+00:00",
                           "uuid": "0a1b2c3d-0000-0000-0000-000000000001",
                           "event_properties": properties},
            "relationships": {"profile": {"data": {"type": "profile", "id": profile_id}},
                              "metric": {"data": {"type": "metric", "id": "UxAbCd"}}},
        },
    }  # fmt: skip
    if metric is not None:
        payload["included"] = [{"type": "metric", "id": "UxAbCd",
                                "attributes": {"name": metric, "integration": {"name": "API"}}}]
    return {"external_id": external_id, "topic": topic, "payload": payload}


# --- flow webhooks --------------------------------------------------------------------------


def test_started_checkout_as_a_marketer_writes_it() -> None:
    body = (FIXTURES / "klaviyo-flow-started-checkout.json").read_bytes()
    event = only_event(parse_flow_webhook(body, received_at=RECEIVED))
    assert event.type is EventType.CHECKOUT_STARTED
    assert event.event_id == "klaviyo-flow:checkout_started:cart-8812-1732788000"
    assert event.profile == ProfileRef(email="ada@example.com", klaviyo_id=PROFILE_ID)
    assert event.occurred_at == RECEIVED
    assert event.source == "klaviyo"
    assert event.properties == {
        "first_name": "Ada",
        "cart_value": 212.5,
        "checkout_url": "https://shop.example/checkout/8812",
        "items": [
            {"product_id": "J-1", "name": "Wool jacket", "quantity": 1, "price": 200.0,
             "image_url": "https://shop.example/j1.jpg", "url": "https://shop.example/p/j1"},
            {"product_id": "S-9", "name": "Socks", "quantity": 1, "price": 12.5,
             "url": "https://shop.example/p/s9"},
        ],
    }
    assert_canonical(event)


def test_added_to_cart_with_klaviyo_names() -> None:
    body = {
        "metric": "Added to Cart", "$id": PROFILE_ID, "$email": "ada@example.com",
        "$value": "49.90", "CheckoutURL": "https://shop.example/cart",
        "Items": "[{'ProductID': 'J-1', 'ProductName': \"Ada's jacket\", 'Quantity': '2', "
                 "'ItemPrice': '24.95', 'RowTotal': 49.9, 'ImageURL': None, 'Tags': ('a', 'b')}]",
        "ItemNames": "['Ada\\'s jacket']", "$event_id": "",
    }  # fmt: skip
    event = only_event(flow(body))
    assert event.type is EventType.CART_UPDATED
    assert event.event_id.startswith("sha256:")
    assert event.properties["cart_value"] == 49.9
    assert event.properties["checkout_url"] == "https://shop.example/cart"
    assert event.properties["items"] == [
        {"product_id": "J-1", "name": "Ada's jacket", "quantity": 2, "price": 24.95,
         "row_total": 49.9, "Tags": ["a", "b"]},
    ]
    assert event.properties["item_names"] == "['Ada\\'s jacket']"
    assert_canonical(event)


def test_placed_order() -> None:
    body = {
        "metric": "Placed Order", "profile_id": PROFILE_ID, "email": "ada@example.com",
        "$event_id": "1001", "OrderId": "1001", "$value": "$1,212.50", "currency": "usd",
        "Items": [{"ProductID": "J-1", "ProductName": "Jacket", "Quantity": 1,
                   "ItemPrice": "1212.50"}],
        "DiscountCode": "WELCOME10", "time": "2026-11-28T09:59:00Z",
    }  # fmt: skip
    event = only_event(flow(body))
    assert event.type is EventType.ORDER_PLACED
    assert event.event_id == "klaviyo-flow:order_placed:1001"
    assert event.occurred_at == datetime(2026, 11, 28, 9, 59, tzinfo=UTC)
    assert event.properties == {
        "order_id": "1001", "value": 1212.5, "currency": "USD", "discount_code": "WELCOME10",
        "items": [{"product_id": "J-1", "name": "Jacket", "quantity": 1, "price": 1212.5}],
    }  # fmt: skip


def test_viewed_product() -> None:
    body = {"metric": "Viewed Product", "profile_id": PROFILE_ID, "ProductName": "Wool jacket",
            "ProductID": "J-1", "Price": "200", "$value": "199", "URL": "https://s.example/j1",
            "ImageURL": "https://s.example/j1.jpg", "Categories": "['Coats']", "SKU": "J1-M"}
    event = only_event(flow(body))
    assert event.type is EventType.PRODUCT_VIEWED
    assert event.properties == {
        "name": "Wool jacket", "product_id": "J-1", "price": 200.0,
        "url": "https://s.example/j1", "image_url": "https://s.example/j1.jpg",
        "categories": "['Coats']", "sku": "J1-M",
    }  # fmt: skip


@pytest.mark.parametrize("metric", ["Back in Stock", "Subscribed to Back in Stock",
                                    "back_in_stock"])
def test_back_in_stock(metric: str) -> None:
    body = {"metric": metric, "email": "ada@example.com", "ProductName": "Socks",
            "ProductID": "S-9", "URL": "https://s.example/s9", "Price": 12.5}
    event = only_event(flow(body))
    assert event.type is EventType.BACK_IN_STOCK
    assert event.properties["name"] == "Socks"


def test_active_on_site_and_canonical_type_names() -> None:
    assert only_event(flow({"metric": "Active on Site", "email": "a@b.co"})).type is (
        EventType.SESSION_STARTED
    )
    assert only_event(flow({"type": "cart_abandoned", "email": "a@b.co"})).type is (
        EventType.CART_ABANDONED
    )
    assert only_event(flow({"metric": "  started   CHECKOUT ", "email": "a@b.co"})).type is (
        EventType.CHECKOUT_STARTED
    )


def test_the_metric_mapping_is_a_parameter() -> None:
    metrics = dict(DEFAULT_METRICS) | {"Wishlist Added": EventType.PRODUCT_VIEWED}
    event = only_event(flow({"metric": "Wishlist Added", "email": "a@b.co"}, metrics=metrics))
    assert event.type is EventType.PRODUCT_VIEWED
    result = flow({"metric": "Placed Order", "email": "a@b.co"}, metrics={})
    assert result.events == () and "Placed Order" in result.dropped[0].reason


def test_missing_fields_are_tolerated() -> None:
    body = {"metric": "Started Checkout", "profile_id": PROFILE_ID, "email": "",
            "$value": "", "CheckoutURL": "None", "Items": "", "$event_id": "null"}
    event = only_event(flow(body))
    assert event.properties == {}
    assert event.profile == ProfileRef(klaviyo_id=PROFILE_ID)


def test_unquoted_items_make_the_body_a_python_literal() -> None:
    items = [{"ProductName": "Levi's 501", "Quantity": 1, "ImageURL": None, "Gift": False},
             {"ProductName": 'The "Best" Tee', "ItemPrice": 9.5}]
    body = ('{"metric": "Started Checkout", "email": "ada@example.com", '
            f'"value": "59.50", "items": {items!r}}}').encode()
    event = only_event(parse_flow_webhook(body, received_at=RECEIVED))
    assert event.properties["items"] == [
        {"name": "Levi's 501", "quantity": 1, "Gift": False},
        {"name": 'The "Best" Tee', "price": 9.5},
    ]
    assert event.properties["cart_value"] == 59.5


def test_html_escaped_items_are_read() -> None:
    body = {"metric": "Started Checkout", "email": "a@b.co",
            "Items": "[{&#39;ProductName&#39;: &#39;Tee&#39;, &#39;Quantity&#39;: 1}]"}
    event = only_event(flow(body))
    assert event.properties["items"] == [{"name": "Tee", "quantity": 1}]


def test_items_json_text_and_a_single_object() -> None:
    json_text = only_event(flow({"metric": "Added to Cart", "email": "a@b.co",
                                 "Items": '[{"ProductName": "Tee", "Quantity": 1}]'}))
    assert json_text.properties["items"] == [{"name": "Tee", "quantity": 1}]
    single = only_event(flow({"metric": "Added to Cart", "email": "a@b.co",
                              "Items": {"ProductName": "Tee"}}))
    assert single.properties["items"] == [{"name": "Tee"}]


def test_content_hash_dedup_key() -> None:
    body = {"metric": "Added to Cart", "email": "a@b.co", "$value": "10"}
    first = only_event(flow(body)).event_id
    assert only_event(flow(body)).event_id == first
    assert only_event(flow(body | {"$value": "11"})).event_id != first


def test_context_is_typed() -> None:
    body = {"metric": "Active on Site", "email": "a@b.co",
            "context": {"city": "Oslo", "logged_in": "true", "session_depth": "3"}}
    event = only_event(flow(body))
    assert event.context == {"city": "Oslo", "logged_in": True, "session_depth": 3}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@b.co"}, "metric"),
        ({"metric": "Added to Cart", "first_name": "Ada"}, "profile"),
        ({"metric": "Added to Cart", "email": "a@b.co", "$value": "lots"}, "properties.cart_value"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "not a list"}, "properties.Items"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "{1, 2}"}, "properties.Items"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "[1]"}, "properties.Items[0]"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "[{'Quantity': 'two'}]"},
         "properties.items[0].quantity"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "[{1: 2}]"},
         "properties.Items[0]"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "[{'P': b'x'}]"},
         "properties.Items[0].P"),
        ({"metric": "Added to Cart", "email": "a@b.co", "Items": "[{'P': 1e999}]"},
         "properties.Items[0].P"),
        ({"metric": "Added to Cart", "email": ["a@b.co"]}, "email"),
        ({"metric": "Added to Cart", "email": "a@b.co", "time": "soon"}, "occurred_at"),
        ({"metric": "Added to Cart", "email": "a@b.co", "$event_id": 1.5}, "event_id"),
        ({"metric": "Added to Cart", "email": "a@b.co", "context": "x"}, "context"),
        ({"metric": "Added to Cart", "email": "a@b.co", "deep": DEEP}, "properties.deep"),
    ],
)
def test_malformed_flow_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    result = flow(body)
    assert result.events == ()
    assert [bad.field for bad in result.malformed] == [field]


def test_oversized_items_text_is_malformed() -> None:
    items = repr([{"ProductName": "x" * 100}] * 10)
    result = flow({"metric": "Added to Cart", "email": "a@b.co", "Items": items},
                  max_items_text=500)
    assert "at most 500" in result.malformed[0].reason


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"", ""), (b"{'metric': 'x', 'a': {1, 2}}", ""), (b"{'metric': 'x'", ""),
     (b"['metric']", ""), (b"[]", ""), (b'"text"', ""),
     (b'{"metric": 5}', "metric"), (b'{"type": ["a"]}', "type")],
)
def test_flow_bodies_of_the_wrong_shape_are_parse_errors(body: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_flow_webhook(body, received_at=RECEIVED)
    assert caught.value.field == field


# --- the bodies docs/inbound.md tells marketers to paste -----------------------------------

EVENT_DATA: dict[str, Any] = {
    "$event_id": "cart-8812", "$value": 212.5, "CheckoutURL": "https://shop.example/c/8812",
    "OrderId": "1001", "DiscountCode": "", "ProductID": "J-1", "ProductName": "Levi's 501",
    "Price": 99.0, "URL": "https://shop.example/p/j1", "ImageURL": "https://shop.example/j1.jpg",
    "AddedItemProductID": "J-1", "AddedItemProductName": "Best Tee",
    "AddedItemImageURL": "https://shop.example/t.jpg",
    "Items": [{"ProductID": "J-1", "ProductName": "Levi's 501", "Quantity": 1,
               "ItemPrice": 99.0, "ImageURL": None, "ProductURL": "https://shop.example/p/j1"}],
}  # fmt: skip


def render(template: str, event_data: dict[str, Any]) -> str:
    """What Klaviyo's template engine makes of a documented body (as far as we use it)."""
    text = template.replace("{{ person.KlaviyoID }}", PROFILE_ID)
    text = text.replace("{{ person.email }}", "ada@example.com")
    text = text.replace("{{ event.Items|default:'[]' }}", repr(event_data.get("Items") or []))
    return re.sub(r"\{\{ event\|lookup:'([^']+)' \}\}",
                  lambda m: str(event_data.get(m.group(1), "")), text)


def documented_bodies() -> list[str]:
    blocks = re.findall(r"```\n(\{\n  \"metric\".*?)```", DOCS.read_text(), re.DOTALL)
    assert len(blocks) == 5
    return blocks


@pytest.mark.parametrize("index", range(5))
def test_documented_flow_bodies_parse(index: int) -> None:
    template = documented_bodies()[index]
    full = only_event(parse_flow_webhook(render(template, EVENT_DATA).encode(),
                                         received_at=RECEIVED))
    assert full.profile == ProfileRef(email="ada@example.com", klaviyo_id=PROFILE_ID)
    assert_canonical(full)
    empty = only_event(parse_flow_webhook(render(template, {}).encode(), received_at=RECEIVED))
    assert empty.type is full.type


def test_an_html_escaped_render_is_read_too() -> None:
    rendered = render(documented_bodies()[0], EVENT_DATA)
    start = rendered.index('"items": ') + len('"items": ')
    escaped = rendered[:start] + html.escape(rendered[start:-2], quote=True) + rendered[-2:]
    event = only_event(parse_flow_webhook(escaped.encode(), received_at=RECEIVED))
    assert event.properties["items"][0]["name"] == "Levi's 501"


def test_documented_started_checkout_in_full() -> None:
    event = only_event(parse_flow_webhook(render(documented_bodies()[0], EVENT_DATA).encode(),
                                          received_at=RECEIVED))
    assert event.type is EventType.CHECKOUT_STARTED
    assert event.event_id == "klaviyo-flow:checkout_started:cart-8812"
    assert event.properties == {
        "cart_value": 212.5, "checkout_url": "https://shop.example/c/8812",
        "items": [{"product_id": "J-1", "name": "Levi's 501", "quantity": 1, "price": 99.0,
                   "url": "https://shop.example/p/j1"}],
    }  # fmt: skip


# --- system webhooks ------------------------------------------------------------------------


def test_documented_batch_of_an_unmapped_metric_is_dropped() -> None:
    body = (FIXTURES / "klaviyo-system-webhook.json").read_bytes()
    result = parse_system_webhook(body, received_at=RECEIVED)
    assert result.events == () and result.malformed == ()
    assert "opened_email" in result.dropped[0].reason


def test_placed_order_system_event() -> None:
    properties = {"$value": 212.5, "OrderId": "1001", "$extra": {"line_items": []},
                  "Items": [{"ProductID": "J-1", "ProductName": "Jacket", "Quantity": 1,
                             "ItemPrice": 200.0}], "ItemNames": ["Jacket"]}
    event = only_event(system(system_event("Placed Order", properties)))
    assert event.type is EventType.ORDER_PLACED
    assert event.event_id == "klaviyo:4L3cw"
    assert event.profile == ProfileRef(klaviyo_id=PROFILE_ID)
    assert event.occurred_at == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert event.context == {"account_id": "AbC123"}
    assert event.properties == {
        "value": 212.5, "order_id": "1001", "item_names": ["Jacket"],
        "items": [{"product_id": "J-1", "name": "Jacket", "quantity": 1, "price": 200.0}],
    }  # fmt: skip
    assert_canonical(event)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [("event:klaviyo.started_checkout", EventType.CHECKOUT_STARTED),
     ("event:shopify.viewed_product", EventType.PRODUCT_VIEWED),
     ("event:klaviyo.active_on_site", EventType.SESSION_STARTED),
     ("event:added_to_cart", EventType.CART_UPDATED)],
)
def test_metric_from_the_topic(topic: str, expected: EventType) -> None:
    event = only_event(system(system_event(None, {"$value": "5"}, topic=topic)))
    assert event.type is expected


def test_included_metric_name_beats_the_topic() -> None:
    item = system_event("Started Checkout", {"$value": 5, "CheckoutURL": "https://s.example/c"},
                        topic="event:klaviyo.custom_metric")
    event = only_event(system(item))
    assert event.type is EventType.CHECKOUT_STARTED
    assert event.properties == {"cart_value": 5.0, "checkout_url": "https://s.example/c"}


def test_a_retried_batch_keeps_its_keys() -> None:
    item = system_event("Placed Order", {"$value": 1})
    assert only_event(system(item)).event_id == only_event(system(item)).event_id


def test_mixed_batch() -> None:
    result = system(
        system_event("Placed Order", {"$value": 1}, external_id="a"),
        system_event("Opened Email", {}, external_id="b"),
        system_event("Placed Order", {"$value": 1}, external_id="c", profile_id=None),
        system_event("Placed Order", {"$value": 1}, external_id=""),
        system_event("Placed Order", {"$value": "x"}, external_id="e"),
        {"external_id": "f"},
        system_event("Placed Order", {}, external_id=7),
        account=None,
    )
    assert [event.event_id for event in result.events] == ["klaviyo:a", "klaviyo:7"]
    assert result.events[0].context == {}
    assert [dropped.index for dropped in result.dropped] == [1]
    assert [(bad.index, bad.field) for bad in result.malformed] == [
        (2, "payload.data.relationships.profile.data.id"),
        (3, "external_id"),
        (4, "properties.value"),
        (5, "topic"),
    ]


def test_payload_parts_of_the_wrong_type_are_malformed() -> None:
    item = system_event("Placed Order", {})
    item["payload"]["data"]["attributes"] = ["x"]
    result = system(item)
    assert result.malformed[0].field == "payload.data.attributes"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"nope", ""),
        (b"[]", ""),
        (b'{"data": {}}', "data"),
        (b'{"meta": {}}', "data"),
        (b'{"data": [1]}', "data[0]"),
        (b'{"data": [{"topic": 1}]}', "data[0].topic"),
        (b'{"data": [{"external_id": true}]}', "data[0].external_id"),
        (b'{"data": [{"payload": "x"}]}', "data[0].payload"),
        (b'{"data": [], "meta": []}', "meta"),
        (b'{"data": [], "meta": {"klaviyo_account_id": 5}}', "meta.klaviyo_account_id"),
    ],
)
def test_system_bodies_of_the_wrong_shape_are_parse_errors(body: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_system_webhook(body, received_at=RECEIVED)
    assert caught.value.field == field


# --- laws -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
klaviyo_keys = st.sampled_from([
    "metric", "type", "profile_id", "email", "$email", "external_id", "$event_id", "event_id",
    "$value", "value", "cart_value", "Items", "items", "CheckoutURL", "OrderId", "Price",
    "currency", "time", "context", "ProductName",
])
items_texts = st.sampled_from([
    "[{'ProductName': 'A', 'Quantity': 1}]", "[{'Quantity': 'x'}]", "{1, 2}", "[[[[1]]]]",
    "[{'a': b'x'}]", "9" * 5000, "(" * 300, "[{'P': 1e999}]", "[None]", "lambda: 1",
    "[{'ItemPrice': '$1,0'}]", "\x00",
])
klaviyo_values = st.one_of(
    json_values, items_texts,
    st.sampled_from(["Placed Order", "Started Checkout", "Viewed Product", "a@b.co", "12.5",
                     "", "None", "2026-11-28T10:00:00Z", "usd"]),
)
flow_bodies = st.dictionaries(klaviyo_keys, klaviyo_values, max_size=8)


@given(st.binary(max_size=200))
def test_flow_parser_on_arbitrary_bytes_raises_only_parse_error(body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_flow_webhook(body, received_at=RECEIVED)


@given(st.binary(max_size=200))
def test_system_parser_on_arbitrary_bytes_raises_only_parse_error(body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_system_webhook(body, received_at=RECEIVED)


@given(flow_bodies | json_values)
def test_flow_parser_on_arbitrary_json_raises_only_parse_error(data: Any) -> None:
    try:
        result = parse_flow_webhook(json.dumps(data).encode(), received_at=RECEIVED)
    except ParseError:
        return
    for event in result.events:
        assert_canonical(event)


@given(st.lists(st.fixed_dictionaries(
    {"topic": st.sampled_from(["event:klaviyo.placed_order", "event:x.started_checkout"])},
    optional={"external_id": klaviyo_values, "payload": json_values,
              "props": flow_bodies})) | json_values)
def test_system_parser_on_arbitrary_json_raises_only_parse_error(data: Any) -> None:
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and "props" in item:
                item.setdefault("payload", {})
                props = item.pop("props")
                if isinstance(item["payload"], dict):
                    item["payload"]["data"] = {"attributes": {"event_properties": props},
                                               "relationships": {"profile": {"data": {"id": "p"}}}}
        data = {"data": data, "meta": {"klaviyo_account_id": "A"}}
    try:
        result = parse_system_webhook(json.dumps(data).encode(), received_at=RECEIVED)
    except ParseError:
        return
    for event in result.events:
        assert_canonical(event)
