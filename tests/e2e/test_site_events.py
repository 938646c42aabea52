"""Browser events end to end: they update the context, but never create a platform profile.

A browser event is written only to the platforms that already know the profile (one a
trusted source — the shop's server or the platform itself — told us about).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.endpoints import ACCOUNT
from tests.e2e.conftest import EVENTS_KEY, FLOW_TOKEN, Running, start
from tests.fakes.fake_hubspot import FakeHubSpotApi
from tests.fakes.fake_klaviyo import FakeKlaviyoApi
from webhooks.identity import sign_identity

SHOP = "https://shop.example"
KEY = "pk_test_e2e"
SECRET = "identity-secret"


@pytest.fixture(params=["embedded", "redis"])
def shop(
    request: pytest.FixtureRequest, tmp_path: Path, fakes: tuple[FakeHubSpotApi, FakeKlaviyoApi]
) -> Iterator[Running]:
    yield from start(
        request,
        tmp_path,
        fakes,
        DCB_PUBLISHABLE_KEY=KEY,
        DCB_ALLOWED_ORIGINS=SHOP,
        DCB_IDENTITY_SECRET=SECRET,
    )


def browser(running: Running, kind: str, cart: float, email: str | None = None) -> Any:
    event: dict[str, Any] = {
        "type": kind,
        "browser_id": "b-3f0c9a2e41d8",
        "properties": {"cart_value": cart, "checkout_url": "https://shop.example/cart"},
    }
    if email:
        event["identity"] = sign_identity(SECRET, "email", email)
    answer = running.client.post(
        "/v1/events", data=json.dumps(event), headers={"Origin": SHOP, "X-DCB-Key": KEY}
    )
    assert answer.status_code == 202, answer.json
    return answer


def context_of(running: Running, **ids: str) -> dict[str, Any]:
    store = running.service.app.extensions["dcb"]["store"]
    key = store.resolve_profile(ACCOUNT, ids)
    return (store.load_context(ACCOUNT, key) if key else None) or {}


def pending(running: Running) -> dict[str, Any]:
    store = running.service.app.extensions["dcb"]["store"]
    status = store.status(0.0)["accounts"].get(ACCOUNT, {})
    return {p: n for p, n in status.get("pending", {}).items() if n}


def test_browser_events_for_an_unknown_shopper_create_no_platform_profile(
    shop: Running,
) -> None:
    browser(shop, "cart_updated", 35.0)  # anonymous
    browser(shop, "checkout_started", 120.0, email="new@example.com")  # identified
    shop.wait_for(lambda: context_of(shop, browser_id="b-3f0c9a2e41d8").get("cart_value") == 35.0)
    shop.wait_for(lambda: context_of(shop, email="new@example.com").get("cart_value") == 120.0)
    assert pending(shop) == {}
    assert shop.hubspot.contacts == {} and shop.klaviyo.profiles == {}
    assert shop.hubspot.batch_calls() == []


def test_a_browser_event_reaches_the_platforms_that_know_the_shopper(shop: Running) -> None:
    server = {
        "type": "profile_updated",
        "event_id": "srv-1",
        "profile": {"email": "ada@example.com"},
    }
    answer = shop.client.post(
        "/v1/events", json=server, headers={"Authorization": f"Bearer {EVENTS_KEY}"}
    )
    assert answer.status_code == 202
    shop.wait_for(lambda: bool((c := shop.hubspot.by_email("ada@example.com")) and c.properties))
    shop.wait_for(lambda: bool((p := shop.klaviyo.by_email("ada@example.com")) and p.properties))
    first = shop.hubspot.by_email("ada@example.com")
    assert first is not None and first.properties["dcb_block"] != "personalized_offer"

    browser(shop, "checkout_started", 200.0, email="ada@example.com")

    def offered(found: Any) -> bool:
        return bool(found and found.properties.get("dcb_block") == "personalized_offer")

    shop.wait_for(lambda: offered(shop.hubspot.by_email("ada@example.com")))
    shop.wait_for(lambda: offered(shop.klaviyo.by_email("ada@example.com")))


def test_a_shopper_known_to_one_platform_is_not_created_on_the_other(shop: Running) -> None:
    profile_id = shop.klaviyo.add_profile("cy@example.com")
    flow = {
        "profile_id": profile_id,
        "email": "cy@example.com",
        "metric": "Viewed Product",
        "event_id": "vp-1",
    }
    answer = shop.client.post(
        "/webhooks/klaviyo/flow",
        data=json.dumps(flow),
        headers={"X-DCB-Token": FLOW_TOKEN, "Content-Type": "application/json"},
    )
    assert answer.status_code == 202, answer.json
    shop.wait_for(lambda: bool((p := shop.klaviyo.by_email("cy@example.com")) and p.properties))

    browser(shop, "checkout_started", 200.0, email="cy@example.com")

    shop.wait_for(
        lambda: shop.klaviyo.profiles[profile_id].properties.get("dcb_block")
        == "personalized_offer"
    )
    assert context_of(shop, email="cy@example.com")["known_on"] == ["klaviyo"]
    assert shop.hubspot.by_email("cy@example.com") is None
    assert shop.hubspot.batch_calls() == []
