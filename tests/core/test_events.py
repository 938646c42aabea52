from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.events import Event, EventError, EventType, ProfileRef, parse_event
from tests.examples import checkout

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

ISSUE_EXAMPLE = checkout()


def test_the_issue_example_parses() -> None:
    event = parse_event(ISSUE_EXAMPLE, received_at=NOW)
    assert event.type is EventType.CHECKOUT_STARTED
    assert event.event_id == "e-123"
    assert event.occurred_at == NOW
    assert event.profile == ProfileRef(email="ada@example.com", external_id="u-42")
    assert event.properties["items"][0]["name"] == "Wool jacket"
    assert event.context["session_depth"] == 4


def test_json_form_round_trips() -> None:
    event = parse_event(ISSUE_EXAMPLE, received_at=NOW)
    assert parse_event(event.to_json(), received_at=NOW) == event


def test_minimal_event_gets_receipt_time_and_a_content_id() -> None:
    body = {"type": "product_viewed", "profile": {"external_id": "u-1"}}
    first = parse_event(body, received_at=NOW)
    resent = parse_event(body, received_at=datetime(2026, 11, 28, 11, tzinfo=UTC))
    assert first.occurred_at == NOW
    assert first.properties == {}
    assert first.event_id == resent.event_id  # a resent identical event is recognised
    other = parse_event({**body, "properties": {"name": "x"}}, received_at=NOW)
    assert other.event_id != first.event_id


def test_unknown_properties_are_kept_and_numeric_strings_accepted() -> None:
    event = parse_event(
        {"type": "cart_updated", "profile": {"email": "A@B.C"},
         "properties": {"cart_value": "12.50", "gift_wrap": {"color": "red"}}},
        received_at=NOW,
    )  # fmt: skip
    assert event.properties == {"cart_value": 12.5, "gift_wrap": {"color": "red"}}
    assert event.profile.email == "a@b.c"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"profile": {"email": "a@b.c"}}, "type: is required"),
        ({"type": "nope", "profile": {"email": "a@b.c"}}, "type: unknown event type \"nope\""),
        ({"type": 3, "profile": {"email": "a@b.c"}}, "type: expected a string, got 3"),
        ({"type": "cart_updated"}, "profile: is required"),
        ({"type": "cart_updated", "profile": {}}, "profile: needs at least one of email"),
        ({"type": "cart_updated", "profile": "a@b.c"}, "profile: expected an object"),
        (
            {"type": "cart_updated", "profile": {"email": "a@b.c"},
             "properties": {"cart_value": "abc"}},
            'properties.cart_value: expected a number, got "abc"',
        ),
        (
            {"type": "cart_updated", "profile": {"email": "a@b.c"},
             "properties": {"items": [{"price": "x"}]}},
            'properties.items[0].price: expected a number, got "x"',
        ),
        (
            {"type": "cart_updated", "profile": {"email": "a@b.c"}, "occurred_at": "yesterday"},
            'occurred_at: expected an ISO 8601 time, got "yesterday"',
        ),
        (
            {"type": "cart_updated", "profile": {"email": "a@b.c"}, "context": {"logged_in": 3}},
            "context.logged_in: expected true or false, got 3",
        ),
        (
            {"type": "order_placed", "profile": {"email": "a@b.c"},
             "properties": {"currency": "dollars"}},
            "properties.currency: expected a 3-letter currency code",
        ),
        ([], "an event must be a JSON object"),
    ],
)  # fmt: skip
def test_errors_name_the_field(body: object, message: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(body, received_at=NOW)
    assert message in str(info.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["type", "profile", "properties", "context",
                                         "occurred_at", "event_id"]), json_values))  # fmt: skip
def test_parse_event_raises_only_its_own_error(body: dict[str, object]) -> None:
    try:
        event = parse_event(body, received_at=NOW)
    except EventError:
        return
    assert isinstance(event, Event)
