"""HubSpot app and workflow webhook bodies -> canonical events."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.hubspot.inbound import (
    DEFAULT_PROPERTY_EVENTS,
    PropertyEvent,
    parse_app_webhook,
    parse_workflow_webhook,
)
from connector.core.events import Event, EventType, ProfileRef, parse_event
from connector.core.inbound import EraseRequest, ParseError, ParseResult

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECEIVED = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def notification(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "objectId": 1246965, "eventId": 100, "subscriptionId": 25, "portalId": 33,
        "appId": 1160452, "occurredAt": 1796119200000, "attemptNumber": 0,
        "subscriptionType": "contact.propertyChange", "changeSource": "CRM_UI",
    }  # fmt: skip
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def app(*items: dict[str, Any], **options: Any) -> ParseResult:
    return parse_app_webhook(json.dumps(list(items)).encode(), received_at=RECEIVED, **options)


def workflow(body: Any, **options: Any) -> ParseResult:
    return parse_workflow_webhook(json.dumps(body).encode(), received_at=RECEIVED, **options)


def only_event(result: ParseResult) -> Event:
    assert not result.malformed and not result.dropped and not result.erasures, result
    assert len(result.events) == 1
    return result.events[0]


def assert_canonical(event: Event) -> None:
    """An event survives the canonical JSON form unchanged."""
    again = parse_event(event.to_json(), received_at=RECEIVED)
    assert again == event


# --- app webhooks ---------------------------------------------------------------------------


def test_documented_batch_with_an_echo_of_our_own_write() -> None:
    body = (FIXTURES / "hubspot-app-webhook-batch.json").read_bytes()
    result = parse_app_webhook(body, received_at=RECEIVED)
    updated, created = result.events
    assert updated.type is EventType.PROFILE_UPDATED
    assert updated.profile == ProfileRef(hubspot_id="1246965")
    assert updated.properties == {"lifecyclestage": "subscriber"}
    assert updated.event_id == "hubspot:33:25:3816279340:1462216307945"
    assert updated.occurred_at == datetime(2016, 5, 2, 19, 11, 47, 945000, tzinfo=UTC)
    assert updated.source == "hubspot"
    assert updated.context == {"account_id": "33"}
    assert created.type is EventType.PROFILE_CREATED
    assert created.profile == ProfileRef(hubspot_id="1246978")
    assert [d.index for d in result.dropped] == [2]
    assert "dcb_block" in result.dropped[0].reason
    assert result.malformed == ()
    for event in result.events:
        assert_canonical(event)


def test_a_retry_keeps_the_dedup_key() -> None:
    first = only_event(app(notification(propertyName="city", propertyValue="Oslo")))
    retry = only_event(app(notification(propertyName="city", propertyValue="Oslo",
                                        attemptNumber=3)))
    assert first.event_id == retry.event_id


def test_dedup_key_names_every_part() -> None:
    other_portal = only_event(app(notification(propertyName="city", propertyValue="x",
                                               portalId=34)))
    assert other_portal.event_id == "hubspot:34:25:100:1796119200000"


def test_mapped_property_becomes_its_event_type() -> None:
    cart = only_event(app(notification(propertyName="cart_value", propertyValue="212.50")))
    assert cart.type is EventType.CART_UPDATED
    assert cart.properties == {"cart_value": 212.5}
    order = only_event(app(notification(propertyName="last_order_date",
                                        propertyValue="1796083200000")))
    assert order.type is EventType.ORDER_PLACED
    assert order.properties == {"last_order_date": "1796083200000"}
    assert_canonical(cart)
    assert_canonical(order)


def test_the_mapping_is_the_accounts() -> None:
    mapping = {"abandoned_cart_total": PropertyEvent(EventType.CART_UPDATED, "cart_value")}
    cart = only_event(app(notification(propertyName="abandoned_cart_total", propertyValue="9"),
                          property_events=mapping))
    assert (cart.type, cart.properties) == (EventType.CART_UPDATED, {"cart_value": 9.0})
    plain = only_event(app(notification(propertyName="cart_value", propertyValue="9"),
                           property_events={}))
    assert (plain.type, plain.properties) == (EventType.PROFILE_UPDATED, {"cart_value": 9.0})
    assert "cart_value" in DEFAULT_PROPERTY_EVENTS


def test_a_cleared_mapped_property_is_dropped() -> None:
    result = app(notification(propertyName="cart_value", propertyValue=""))
    assert result.events == ()
    assert "cart_value was cleared" in result.dropped[0].reason


@pytest.mark.parametrize("kind", ["contact.deletion", "contact.privacyDeletion"])
def test_deletions_are_erase_requests(kind: str) -> None:
    result = app(notification(subscriptionType=kind, eventId=7))
    assert result.events == ()
    assert result.erasures == (
        EraseRequest(
            profile=ProfileRef(hubspot_id="1246965"),
            source="hubspot",
            dedup_key="hubspot:33:25:7:1796119200000",
            occurred_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
            account_id="33",
        ),
    )


def test_event_type_is_accepted_for_subscription_type() -> None:
    item = notification(subscriptionType=None, eventType="contact.creation")
    assert only_event(app(item)).type is EventType.PROFILE_CREATED


def test_generic_object_kinds_for_contacts() -> None:
    contact = notification(subscriptionType="object.propertyChange", objectTypeId="0-1",
                           propertyName="cart_value", propertyValue="5")
    deal = notification(subscriptionType="object.creation", objectTypeId="0-3")
    result = app(contact, deal)
    assert [event.type for event in result.events] == [EventType.CART_UPDATED]
    assert [dropped.index for dropped in result.dropped] == [1]


@pytest.mark.parametrize("kind", ["deal.creation", "contact.merge", "company.propertyChange",
                                  "contact.associationChange"])
def test_unknown_kinds_are_dropped(kind: str) -> None:
    result = app(notification(subscriptionType=kind))
    assert result.events == () and result.malformed == ()
    assert kind in result.dropped[0].reason


def test_our_own_properties_are_dropped_whatever_the_prefix_case() -> None:
    result = app(notification(propertyName="dcb_headline", propertyValue="Hi"),
                 notification(propertyName="DCB_body", propertyValue="x"))
    assert len(result.dropped) == 2 and result.events == ()
    custom = app(notification(propertyName="shop_block", propertyValue="x"), own_prefix="shop_")
    assert len(custom.dropped) == 1


def test_numeric_strings_are_accepted_for_ids() -> None:
    event = only_event(app(notification(objectId="1246965", portalId="33", eventId="100",
                                        propertyName="city", propertyValue="Oslo")))
    assert event.profile.hubspot_id == "1246965"
    assert event.event_id == "hubspot:33:25:100:1796119200000"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (notification(objectId=None, propertyName="city"), "objectId"),
        (notification(propertyName=None), "propertyName"),
        (notification(eventId=None, propertyName="city"), "eventId"),
        (notification(occurredAt=None, subscriptionType="contact.creation"), "occurredAt"),
        (notification(subscriptionType=None), "subscriptionType"),
        (notification(propertyName="cart_value", propertyValue="lots"), "properties.cart_value"),
        (notification(propertyName="currency", propertyValue="dollars"), "properties.currency"),
        (notification(subscriptionType="contact.creation", occurredAt=10**20), "occurredAt"),
    ],
)
def test_malformed_items_name_their_field(item: dict[str, Any], field: str) -> None:
    good = notification(propertyName="city", propertyValue="Oslo", eventId=5)
    result = app(good, item)
    assert len(result.events) == 1
    assert [(bad.index, bad.field) for bad in result.malformed] == [(1, field)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", ""),
        (b"", ""),
        (b"\xff\xfe\x00", ""),
        (b'{"objectId": 1}', ""),
        (b"[1]", "[0]"),
        (b'[{"subscriptionType": 5}]', "[0].subscriptionType"),
        (b'[{"eventType": ["contact.creation"]}]', "[0].eventType"),
        (b'[{"objectId": "abc"}]', "[0].objectId"),
        (b'[{"objectId": 1.5}]', "[0].objectId"),
        (b'[{"objectId": true}]', "[0].objectId"),
        (b'[{"propertyValue": {"a": 1}}]', "[0].propertyValue"),
        (b'[{"occurredAt": NaN}]', ""),
        (b'[{"propertyValue": 1e999}]', ""),
        (b"[" * 100_000 + b"]" * 100_000, ""),
    ],
)
def test_bodies_of_the_wrong_shape_are_one_parse_error(body: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_app_webhook(body, received_at=RECEIVED)
    assert caught.value.field == field


def test_more_than_a_batch_is_a_parse_error() -> None:
    items = [notification(eventId=i, subscriptionType="contact.creation") for i in range(101)]
    with pytest.raises(ParseError, match="101 notifications"):
        app(*items)
    assert len(app(*items[:100]).events) == 100


# --- workflow webhooks ----------------------------------------------------------------------


def test_workflow_body_with_object_id_and_properties() -> None:
    body = {"objectId": 1246965, "email": "Ada@Example.com", "portalId": 33,
            "properties": {"firstname": "Ada", "cart_value": "212.50", "dcb_block": "x",
                           "hs_object_id": "1246965", "lastname": ""}}
    event = only_event(workflow(body))
    assert event.type is EventType.PROFILE_UPDATED
    assert event.profile == ProfileRef(email="ada@example.com", hubspot_id="1246965")
    assert event.properties == {"firstname": "Ada", "cart_value": 212.5}
    assert event.context == {"account_id": "33"}
    assert event.occurred_at == RECEIVED
    assert event.source == "hubspot"
    assert_canonical(event)


def test_workflow_flat_body_with_hs_object_id() -> None:
    body = {"hs_object_id": "501", "email": "bo@example.com", "cart_value": "10",
            "checkout_url": "https://shop.example/c/1"}
    event = only_event(workflow(body, event_type=EventType.CART_ABANDONED))
    assert event.type is EventType.CART_ABANDONED
    assert event.profile == ProfileRef(email="bo@example.com", hubspot_id="501")
    assert event.properties == {"cart_value": 10.0, "checkout_url": "https://shop.example/c/1"}


def test_workflow_legacy_v1_contact() -> None:
    body = {
        "vid": 3234574, "canonical-vid": 3234574, "portal-id": 62515, "is-contact": True,
        "properties": {
            "email": {"value": "testingapis@hubspot.com", "versions": [{"value": "x"}]},
            "firstname": {"value": "Test", "versions": []},
            "lastmodifieddate": {"value": "1484026585538", "versions": []},
        },
        "identity-profiles": [{"vid": 3234574, "identities": []}],
    }
    event = only_event(workflow(body))
    assert event.profile == ProfileRef(email="testingapis@hubspot.com", hubspot_id="3234574")
    assert event.properties == {"firstname": "Test", "lastmodifieddate": "1484026585538"}
    assert event.context == {"account_id": "62515"}


def test_workflow_email_only() -> None:
    event = only_event(workflow({"properties": {"email": "ada@example.com", "city": "Oslo"}}))
    assert event.profile == ProfileRef(email="ada@example.com")


def test_workflow_dedup_key_follows_the_content() -> None:
    properties = {"cart_value": "10", "lastmodifieddate": "1"}
    body = {"objectId": 1, "properties": properties}
    retry = only_event(workflow(body)).event_id
    assert only_event(workflow(body)).event_id == retry
    properties["lastmodifieddate"] = "2"
    assert only_event(workflow(body)).event_id != retry


def test_workflow_renames_mapped_properties() -> None:
    mapping = {"abandoned_cart_total": PropertyEvent(EventType.CART_UPDATED, "cart_value")}
    body = {"objectId": 1, "properties": {"abandoned_cart_total": "12"}}
    event = only_event(workflow(body, property_events=mapping, event_type=EventType.CART_UPDATED))
    assert event.properties == {"cart_value": 12.0}


def test_workflow_without_an_identity_is_malformed() -> None:
    result = workflow({"properties": {"firstname": "Ada"}})
    assert result.events == ()
    assert result.malformed[0].field == "profile"


def test_workflow_bad_typed_value_is_malformed() -> None:
    result = workflow({"objectId": 1, "properties": {"cart_value": "a lot"}})
    assert result.malformed[0].field == "properties.cart_value"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[]", ""),
        (b"{", ""),
        (b'{"objectId": "abc"}', "objectId"),
        (b'{"vid": {"value": 1}}', "vid"),
        (b'{"portalId": "x", "objectId": 1}', "portalId"),
        (b'{"properties": [1, 2]}', "properties"),
        (b'{"properties": {"hs_object_id": "x1"}}', "hs_object_id"),
        (b'{"objectId": 1, "email": 42}', "email"),
    ],
)
def test_workflow_wrong_shapes_are_parse_errors(body: bytes, field: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_workflow_webhook(body, received_at=RECEIVED)
    assert caught.value.field == field


# --- laws -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
hubspot_keys = st.sampled_from([
    "objectId", "eventId", "subscriptionId", "portalId", "occurredAt", "subscriptionType",
    "eventType", "propertyName", "propertyValue", "objectTypeId", "attemptNumber",
    "email", "properties", "hs_object_id", "vid", "portal-id", "cart_value", "currency",
])
hubspot_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2, max_value=10**21),
    st.sampled_from(["contact.creation", "contact.propertyChange", "contact.deletion",
                     "object.creation", "0-1", "cart_value", "dcb_x", "currency", "12.5", "",
                     "1796119200000", "abc"]),
    json_values,
)
notifications = st.dictionaries(hubspot_keys, hubspot_scalars, max_size=10)


@given(st.binary(max_size=200))
def test_app_parser_on_arbitrary_bytes_raises_only_parse_error(body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_app_webhook(body, received_at=RECEIVED)


@given(st.lists(notifications, max_size=4) | json_values)
def test_app_parser_on_arbitrary_json_raises_only_parse_error(data: Any) -> None:
    try:
        result = parse_app_webhook(json.dumps(data).encode(), received_at=RECEIVED)
    except ParseError:
        return
    for event in result.events:
        assert_canonical(event)


@given(notifications | json_values)
def test_workflow_parser_raises_only_parse_error(data: Any) -> None:
    try:
        result = parse_workflow_webhook(json.dumps(data).encode(), received_at=RECEIVED)
    except ParseError:
        return
    for event in result.events:
        assert_canonical(event)


@given(st.binary(max_size=200))
def test_workflow_parser_on_arbitrary_bytes_raises_only_parse_error(body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_workflow_webhook(body, received_at=RECEIVED)
