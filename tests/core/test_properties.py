"""The dcb_* property set: always complete, strings only, and compared without the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.decisions import Decision, Outcome, Variant
from connector.core.properties import CONTENT_OUTPUTS, build_properties, differs
from connector.core.properties_schema import PROPERTY_NAMES

AT = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
DECISION = Decision(
    outcome=Outcome.RULE,
    block="personalized_offer",
    params={"discount_percent": 20},
    rule_id="premium-offer",
    ruleset="cart-recovery",
    ruleset_version="3",
)


def test_every_property_is_present_and_a_string() -> None:
    properties = build_properties(DECISION, {"headline": "20% off"}, AT)
    assert list(properties) == list(PROPERTY_NAMES)
    assert properties["dcb_block"] == "personalized_offer"
    assert properties["dcb_rule"] == "premium-offer"
    assert properties["dcb_ruleset_version"] == "3"
    assert properties["dcb_variant"] == "treatment"
    assert properties["dcb_headline"] == "20% off"
    assert properties["dcb_html"] == "" and properties["dcb_coupon"] == ""
    assert properties["dcb_computed_at"] == "2026-11-28T10:00:00Z"
    assert all(isinstance(value, str) for value in properties.values())


def test_every_output_has_a_property() -> None:
    assert {f"dcb_{name}" for name in CONTENT_OUTPUTS} <= set(PROPERTY_NAMES)


def test_fallback_holdout_and_the_rendered_block() -> None:
    holdout = Decision(Outcome.HOLDOUT, "we_noticed", {}, None, "r", "7", Variant.HOLDOUT)
    properties = build_properties(holdout, {}, AT)
    assert properties["dcb_rule"] == "" and properties["dcb_variant"] == "holdout"
    assert build_properties(DECISION, {}, AT, block="we_noticed")["dcb_block"] == "we_noticed"


def test_computed_at_is_utc_with_z() -> None:
    local = datetime(2026, 11, 28, 5, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=-5)))
    assert build_properties(DECISION, {}, local)["dcb_computed_at"] == "2026-11-28T10:00:00.250Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        build_properties(DECISION, {}, datetime(2026, 11, 28))


def test_differs_ignores_only_computed_at() -> None:
    first = build_properties(DECISION, {"headline": "a"}, AT)
    later = build_properties(DECISION, {"headline": "a"}, AT + timedelta(hours=1))
    assert not differs(first, later)
    assert differs(first, build_properties(DECISION, {"headline": "b"}, AT))
    assert not differs({"dcb_coupon": ""}, {})
    assert differs({"dcb_coupon": "X"}, {})


@given(st.dictionaries(st.sampled_from(CONTENT_OUTPUTS), st.text()), st.text())
def test_differs_is_symmetric_and_reflexive(outputs: dict[str, str], other: str) -> None:
    a = build_properties(DECISION, outputs, AT)
    b = build_properties(DECISION, {**outputs, "body": other}, AT + timedelta(seconds=5))
    assert not differs(a, a)
    assert differs(a, b) == differs(b, a) == (a["dcb_body"] != b["dcb_body"])
