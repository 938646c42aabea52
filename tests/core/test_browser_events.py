"""Browser events: what a shopper's browser may say, and what the server decides for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.core.browser import (
    BROWSER_SOURCE,
    browser_event,
    check_url,
    is_browser,
    read_browser_event,
)
from connector.core.events import EventType, ProfileRef
from connector.core.inbound import ParseError
from connector.core.ratelimit import PRUNE_AT, FixedWindowLimiter
from tests.fakes.clock import FakeClock

DOMAINS = ("shop.example",)
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def body(**fields: Any) -> bytes:
    event: dict[str, Any] = {"type": "cart_updated", "browser_id": "b-3f0c9a2e41d8"}
    event.update(fields)
    return json.dumps(event).encode()


def refused(raw: bytes) -> str:
    with pytest.raises(ParseError) as caught:
        read_browser_event(raw, shop_domains=DOMAINS)
    return str(caught.value)


def test_a_cart_is_read_and_typed() -> None:
    items = [{"product_id": "J-1", "price": "200.00", "quantity": 1,
              "url": "https://shop.example/p/j-1", "image_url": "https://cdn.shop.example/j.jpg"}]
    event = read_browser_event(
        body(properties={"cart_value": "200", "currency": "eur", "items": items}),
        shop_domains=DOMAINS,
    )
    assert event.type is EventType.CART_UPDATED and event.browser_id == "b-3f0c9a2e41d8"
    assert event.properties["cart_value"] == 200.0 and event.properties["currency"] == "EUR"
    assert event.properties["items"][0]["price"] == 200.0


@pytest.mark.parametrize("kind", ["order_placed", "back_in_stock", "profile_updated", "erase", 3])
def test_only_browsing_carts_and_checkouts_are_accepted(kind: Any) -> None:
    assert refused(body(type=kind)).startswith("type:")


@pytest.mark.parametrize("browser_id", [None, "short", "x" * 65, "has space 123", 12345678])
def test_a_browser_id_is_required_and_opaque(browser_id: Any) -> None:
    assert refused(body(browser_id=browser_id)).startswith("browser_id:")


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"profile": {"email": "victim@example.com"}}, "profile"),
        ({"context": {"city": "Oslo"}}, "context"),
        ({"source": "api"}, "source"),
        ({"properties": {"order_id": "o-1"}}, "properties.order_id"),
        ({"properties": {"coupon": "FREE"}}, "properties.coupon"),
        ({"properties": {"items": [{"promo": "x"}]}}, "properties.items[0].promo"),
        ({"properties": {"name": "x" * 501}}, "properties.name"),
        ({"properties": {"name": ["a"]}}, "properties.name"),
        ({"properties": {"cart_value": "lots"}}, "properties.cart_value"),
        ({"identity": ""}, "identity"),
        ({"event_id": "has space"}, "event_id"),
    ],
)
def test_what_a_browser_may_not_say_is_refused_with_the_field(
    fields: dict[str, Any], where: str
) -> None:
    assert refused(body(**fields)).startswith(f"{where}:")


def test_a_body_that_is_not_one_event_object_is_refused() -> None:
    assert "not JSON" in refused(b"{")
    assert "one event object" in refused(b"[]")


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/p/1",
        "http://shop.example/p/1",
        "https://www.shop.example/p/1?ref=mail",
        "https://SHOP.example./p/1",
        "https://cdn.shop.example:8443/i.jpg",
    ],
)
def test_urls_on_the_shops_domains_are_accepted(url: str) -> None:
    assert check_url(url, "url", DOMAINS) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example/p/1", "evil.example is not one of the shop's domains"),
        ("https://shop.example.evil.example/", "not one of the shop's domains"),
        ("https://evilshop.example/", "not one of the shop's domains"),
        ("https://shop.example@evil.example/", "user name or password"),
        ("javascript:alert(1)", "expected an http(s) URL"),
        ("//evil.example/x", "expected an http(s) URL"),
        ("/relative/path", "expected an http(s) URL"),
        ("https://shop.example:99999/", "not a valid URL"),
    ],
)
def test_urls_elsewhere_are_refused_with_the_reason(url: str, reason: str) -> None:
    for where, fields in [
        ("properties.url", {"url": url}),
        ("properties.checkout_url", {"checkout_url": url}),
        ("properties.items[0].image_url", {"items": [{"image_url": url}]}),
    ]:
        message = refused(body(properties=fields))
        assert message.startswith(f"{where}:") and reason in message


@pytest.mark.parametrize("text", ["see https://evil.example", "visit www.evil.example now"])
def test_text_may_not_carry_a_link(text: str) -> None:
    assert "a link is accepted only in a URL field" in refused(body(properties={"name": text}))


def test_the_server_stamps_the_time_and_ignores_the_browsers() -> None:
    read = read_browser_event(body(occurred_at="2020-01-01T00:00:00Z"), shop_domains=DOMAINS)
    event = browser_event(read, identity=None, received_at=NOW)
    assert event.occurred_at == NOW
    assert event.source == BROWSER_SOURCE and is_browser(event)


def test_without_an_identity_the_event_is_the_anonymous_browsers() -> None:
    read = read_browser_event(body(), shop_domains=DOMAINS)
    event = browser_event(read, identity=None, received_at=NOW)
    assert event.profile == ProfileRef(browser_id="b-3f0c9a2e41d8")


def test_with_an_identity_the_event_is_that_shoppers_only() -> None:
    """The browser id is not attached to an identified shopper: on a shared computer a
    second shopper's login must not link them to the first one's profile."""
    read = read_browser_event(body(), shop_domains=DOMAINS)
    event = browser_event(read, identity=ProfileRef(email="Ada@Example.com"), received_at=NOW)
    assert event.profile == ProfileRef(email="ada@example.com")


def test_event_ids_are_namespaced_by_browser() -> None:
    def event_id(browser: str, client_id: str | None) -> str:
        fields = {"browser_id": browser} | ({"event_id": client_id} if client_id else {})
        read = read_browser_event(body(**fields), shop_domains=DOMAINS)
        return browser_event(read, identity=None, received_at=NOW).event_id

    assert event_id("b-11111111", "e-1") == event_id("b-11111111", "e-1")  # a resend
    assert event_id("b-11111111", "e-1") != event_id("b-22222222", "e-1")
    assert event_id("b-11111111", "e-1").startswith("browser:")
    assert event_id("b-11111111", "order:42") != "order:42"
    assert event_id("b-11111111", None).startswith("browser:")


def test_fixed_window_limiter_forgets_ended_windows() -> None:
    """One counter per browser would grow without end; ended minutes' counters go."""
    clock = FakeClock()
    limiter = FixedWindowLimiter([(1, 60.0)], clock)
    for minute in range(5):
        for n in range(PRUNE_AT):
            assert limiter.reserve(f"browser:{minute}:{n}") == 0.0
        assert limiter.reserve(f"browser:{minute}:0") > 0  # still within its minute
        assert len(limiter._counts) <= 2 * PRUNE_AT + 1
        clock.advance(60)
    assert limiter.reserve("browser:0:0") == 0.0
