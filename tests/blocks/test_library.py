"""Every shipped block renders every output, with data and without."""

from __future__ import annotations

import re
from typing import Any

import pytest

from blocks.renderer import OUTPUT_LIMITS
from connector.core.properties import CONTENT_OUTPUTS
from tests.blocks.blocks_helpers import bare_event, event, shipped

SHIPPED = [
    "personalized_offer",
    "time_sensitive_alert",
    "localized_offer",
    "post_purchase_nudge",
    "cart_abandonment",
    "onboarding",
    "loyalty_reward",
    "we_noticed",
    "back_soon",
]
PROFILE: dict[str, Any] = {"city": "NYC", "purchases_90d": 4, "logged_in": True}


def render(block: str, params: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, str]:
    ev = kwargs.pop("ev", event())
    profile = kwargs.pop("profile", PROFILE)
    rendered = shipped().renderer.render(block, params or {}, ev, profile)
    assert not rendered.fell_back, rendered.error
    assert rendered.block_id == block
    return dict(rendered.outputs)


def test_the_library_ships_the_nine_blocks() -> None:
    assert sorted(shipped().renderer.block_ids) == sorted(SHIPPED)
    assert sorted(shipped().catalogue) == sorted(SHIPPED)


@pytest.mark.parametrize("block", SHIPPED)
def test_every_block_renders_every_output_from_a_full_event(block: str) -> None:
    outputs = render(block)
    assert set(outputs) == set(CONTENT_OUTPUTS)
    for name in ("headline", "body", "cta_text", "html", "text"):
        assert outputs[name], f"{block}.{name} is empty"
    for name, limit in OUTPUT_LIMITS.items():
        assert len(outputs[name]) <= limit
    assert len(outputs["text"]) <= 160
    assert outputs["headline"] in outputs["text"]


@pytest.mark.parametrize("block", SHIPPED)
def test_every_block_copes_with_no_data_at_all(block: str) -> None:
    for ev in (None, bare_event(), bare_event("order_placed")):
        outputs = render(block, ev=ev, profile={})
        assert outputs["headline"] and outputs["body"] and outputs["html"]
        assert "None" not in outputs["headline"] + outputs["body"]
        assert outputs["cta_url"] == "" or outputs["cta_url"].startswith("https://")


@pytest.mark.parametrize("block", SHIPPED)
def test_html_is_a_self_contained_inline_styled_fragment(block: str) -> None:
    html = render(block)["html"]
    assert html.startswith("<table") and html.endswith("</table>")
    assert 'style="' in html
    assert not re.search(r"<(script|style|link|html|head|body)\b", html)
    assert "{{" not in html and "{%" not in html


@pytest.mark.parametrize("block", SHIPPED)
def test_plain_outputs_carry_no_markup(block: str) -> None:
    outputs = render(block)
    for name in ("headline", "body", "cta_text", "coupon", "text"):
        assert "<" not in outputs[name] and ">" not in outputs[name]


def test_personalized_offer_copy() -> None:
    outputs = render("personalized_offer", {"discount_percent": 20, "tier": "premium"})
    assert outputs["headline"] == "20% off your cart — today only"
    assert "Wool jacket" in outputs["body"] and "best customers" in outputs["body"]
    assert outputs["cta_url"] == "https://shop.example/cart/42"
    assert outputs["image_url"] == "https://shop.example/j1.jpg"
    assert 'href="https://shop.example/cart/42"' in outputs["html"]
    assert outputs["text"] == "20% off your cart — today only. https://shop.example/cart/42"


def test_time_sensitive_alert_copy() -> None:
    ev = event(
        {"type": "back_in_stock", "profile": {"email": "a@b.c"}},
        name="Rain coat",
        variant="M",
        url="https://shop.example/p/rc",
    )
    outputs = render("time_sensitive_alert", ev=ev)
    assert outputs["headline"] == "Your size M is back in stock — claim it before it's gone!"
    assert outputs["body"].startswith("Rain coat in size M is available again")
    assert outputs["cta_url"] == "https://shop.example/p/rc"


def test_localized_offer_copy() -> None:
    params = {"discount_percent": 15, "city": "NYC", "window": "this weekend only"}
    outputs = render("localized_offer", params)
    assert outputs["headline"] == "Exclusive for users in NYC: 15% off this weekend only"
    assert render("localized_offer", profile={"city": "Boston"})["headline"].startswith(
        "Exclusive for users in Boston"
    )
    assert render("localized_offer", profile={})["headline"].startswith("Exclusive for you")


def test_post_purchase_nudge_copy() -> None:
    ev = event(
        {"type": "order_placed", "profile": {"email": "a@b.c"}},
        order_id="1001",
        items=[{"name": "blender", "url": "https://shop.example/p/b"}],
    )
    outputs = render("post_purchase_nudge", ev=ev)
    assert outputs["headline"] == "Loved your new blender? Here's 25% off related accessories"
    assert "order 1001" in outputs["body"]


def test_cart_abandonment_copy_reads_the_event_or_the_stored_cart() -> None:
    outputs = render("cart_abandonment", {"discount_percent": 10, "coupon": "COMEBACK10"})
    assert outputs["headline"] == "Your Wool jacket is still in your cart — take 10% off"
    assert "200.00 USD" in outputs["body"]
    assert outputs["coupon"] == "COMEBACK10" and "COMEBACK10" in outputs["html"]
    stored = {"cart": {"items": [{"name": "Scarf"}, {"name": "Hat"}]}, "cart_value": 45.5,
              "checkout_url": "https://shop.example/cart/7"}  # fmt: skip
    outputs = render("cart_abandonment", ev=bare_event("cart_abandoned"), profile=stored)
    assert outputs["headline"] == "Your Scarf is still in your cart"
    assert "2 items" in outputs["body"] and "45.50" in outputs["body"]
    assert outputs["cta_url"] == "https://shop.example/cart/7"


def test_onboarding_and_loyalty_copy() -> None:
    onboarding = render("onboarding")
    assert onboarding["headline"] == "Welcome! Here's 10% off your first order"
    assert onboarding["coupon"] == "WELCOME10"
    loyalty = render("loyalty_reward", {"reward": "double points"})
    assert loyalty["headline"] == "Thanks for being a regular: enjoy double points"
    assert "4 times in the last 90 days" in loyalty["body"]


def test_fallback_and_delayed_data_copy() -> None:
    noticed = render("we_noticed")
    assert noticed["headline"] == "We noticed you liked this"
    assert noticed["cta_text"] == "Explore More"
    back = render("back_soon")
    assert back["headline"] == "Back soon — save your cart"
    assert back["cta_url"] == "https://shop.example/cart/42"


def test_event_items_is_the_cart_not_dict_items() -> None:
    outputs = render("personalized_offer", ev=event(items=[{"name": "Socks"}, {"name": "Cap"}]))
    assert "your Socks and 1 more item" in outputs["body"]


def test_params_given_override_defaults_and_bad_ones_fall_back() -> None:
    assert render("we_noticed", {"cta_text": "Browse"})["cta_text"] == "Browse"
    rendered = shipped().renderer.render("we_noticed", {"nope": 1}, event(), {})
    assert rendered.fell_back and "nope" in (rendered.error or "")
