from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.context import fold
from connector.core.decisions import Outcome, Variant
from connector.core.events import Event, EventType, ProfileRef
from connector.core.rules import decide, holdout_arm
from connector.rulesets import example_text
from tests.core.rules_helpers import SATURDAY, TUESDAY, decide_for, one_rule, ruleset


def matches(when: str, properties: dict[str, Any] | None = None, **context: Any) -> bool:
    decision = decide_for(one_rule(when), properties=properties, context=context)
    return decision.outcome is Outcome.RULE


@pytest.mark.parametrize(
    ("when", "value", "expected"),
    [
        ("{event.cart_value: 10}", 10, True),
        ("{event.cart_value: 10}", 11, False),
        ("{event.cart_value: {eq: 10}}", 10.0, True),
        ("{event.cart_value: {ne: 10}}", 11, True),
        ("{event.cart_value: {ne: 10}}", 10, False),
        ("{event.cart_value: {gt: 150}}", 150.01, True),
        ("{event.cart_value: {gt: 150}}", 150, False),
        ("{event.cart_value: {gte: 150}}", 150, True),
        ("{event.cart_value: {lt: 5}}", 4, True),
        ("{event.cart_value: {lte: 5}}", 5, True),
        ("{event.cart_value: {lte: 5}}", 6, False),
        ("{event.cart_value: {in: [1, 2]}}", 2, True),
        ("{event.cart_value: {not_in: [1, 2]}}", 3, True),
        ("{event.cart_value: {not_in: [1, 2]}}", 1, False),
        ("{event.cart_value: {between: [10, 20]}}", 10, True),
        ("{event.cart_value: {between: [10, 20]}}", 20, True),
        ("{event.cart_value: {between: [10, 20]}}", 20.5, False),
        ("{event.cart_value: {gt: 10, lt: 20}}", 15, True),
        ("{event.cart_value: {gt: 10, lt: 20}}", 25, False),
        ("{event.cart_value: {gt: 10}}", "abc", False),  # wrong kind never matches
        ("{event.cart_value: {exists: true}}", 1, True),
        ("{event.tag: {contains: sale}}", None, False),
    ],
)  # fmt: skip
def test_operators(when: str, value: Any, expected: bool) -> None:
    props = {} if value is None else {"cart_value": value}
    assert matches(when, props) is expected


def test_a_value_can_be_another_field() -> None:
    assert matches("{event.cart_value: {gt: {field: event.threshold}}}", {"cart_value": 20, "threshold": 10})
    assert not matches("{event.cart_value: {gt: {field: event.threshold}}}", {"cart_value": 5, "threshold": 10})
    assert matches("{event.items: {contains: {field: event.product_id}}}", {"items": [{"product_id": "J-1"}], "product_id": "J-1"})
    assert not matches("{event.cart_value: {eq: {field: event.missing}}}", {"cart_value": 5})
    assert matches("{not: {event.cart_value: {eq: {field: event.missing}}}}", {"cart_value": 5})


def test_contains_on_strings_lists_and_items() -> None:
    assert matches("{event.note: {contains: gift}}", {"note": "a gift for mum"})
    assert matches("{event.tags: {contains: vip}}", {"tags": ["new", "vip"]})
    assert matches("{event.items: {contains: J-1}}", {"items": [{"product_id": "J-1"}]})
    assert not matches("{event.items: {contains: J-2}}", {"items": [{"product_id": "J-1"}]})


def test_bare_true_is_not_one() -> None:
    assert not matches("{event.flag: true}", {"flag": 1})
    assert matches("{event.flag: true}", {"flag": True})


def test_within_a_duration() -> None:
    recent = (TUESDAY - timedelta(minutes=10)).isoformat()
    old = (TUESDAY - timedelta(hours=2)).isoformat()
    assert matches("{event.seen_at: {within: 30m}}", {"seen_at": recent})
    assert not matches("{event.seen_at: {within: 30m}}", {"seen_at": old})
    assert not matches("{event.seen_at: {within: 30m}}", {"seen_at": "not a time"})


def test_missing_paths_compare_false_except_exists_false() -> None:
    assert not matches("{profile.tier: gold}")
    assert not matches("{profile.tier: {ne: gold}}")
    assert matches("{profile.tier: {exists: false}}")
    assert matches("{not: {profile.tier: gold}}")
    decision = decide_for(one_rule("{profile.tier: gold}"))
    condition = decision.trace.rules[0].conditions[0]
    assert condition.missing and "actual missing" in condition.describe()


def test_combinators() -> None:
    assert matches("{all: [{event.a: 1}, {event.b: 2}]}", {"a": 1, "b": 2})
    assert not matches("{all: [{event.a: 1}, {event.b: 2}]}", {"a": 1, "b": 3})
    assert matches("{any: [{event.a: 1}, {event.b: 2}]}", {"a": 0, "b": 2})
    assert not matches("{any: [{event.a: 1}, {event.b: 2}]}", {"a": 0, "b": 0})
    assert matches("{not: {event.a: 1}}", {"a": 2})
    assert matches("{event.a: 1, event.b: 2}", {"a": 1, "b": 2})  # several keys: all hold
    assert matches("{any: [{not: {event.a: 1}}, {all: [{event.b: 2}]}]}", {"a": 1, "b": 2})


def test_event_type_and_now_paths() -> None:
    assert matches("{event.type: cart_updated}")
    rules = one_rule("{now.weekday: {in: [sat, sun]}, now.hour: {between: [14, 16]}}")
    assert decide_for(rules, now=SATURDAY).outcome is Outcome.RULE  # 15:00 UTC, the default
    assert decide_for(rules, now=TUESDAY).outcome is Outcome.FALLBACK


def test_now_uses_the_rule_sets_time_zone() -> None:
    text = ("ruleset: t\ntimezone: America/New_York\nrules:\n  - id: r\n"
            "    when: {now.hour: 10, now.date: '2026-11-28'}\n    block: onboarding\n"
            "fallback: {block: we_noticed}\n")  # fmt: skip
    assert decide_for(ruleset(text), now=SATURDAY).outcome is Outcome.RULE


def test_first_match_wins_and_children_come_before_the_parent() -> None:
    text = """
ruleset: t
rules:
  - id: parent
    when: {event.a: 1}
    block: localized_offer
    rules:
      - id: child-no
        when: {event.b: 0}
        block: onboarding
      - id: child-yes
        when: {event.b: 2}
        block: loyalty_reward
  - id: later
    when: {event.a: 1}
    block: onboarding
fallback: {block: we_noticed}
"""
    rules = ruleset(text)
    assert decide_for(rules, properties={"a": 1, "b": 2}).rule_id == "child-yes"
    assert decide_for(rules, properties={"a": 1, "b": 9}).rule_id == "parent"
    trace = decide_for(rules, properties={"a": 2}).trace
    assert [r.rule_id for r in trace.rules] == ["parent", "later"]  # children not tried


def test_a_rule_without_a_block_only_groups() -> None:
    text = """
ruleset: t
rules:
  - id: group
    when: {event.a: 1}
    rules:
      - {id: inner, when: {event.b: 2}, block: onboarding}
  - {id: next, block: loyalty_reward}
fallback: {block: we_noticed}
"""
    rules = ruleset(text)
    assert decide_for(rules, properties={"a": 1, "b": 2}).rule_id == "inner"
    assert decide_for(rules, properties={"a": 1, "b": 3}).rule_id == "next"


def test_fallback_when_nothing_matches() -> None:
    decision = decide_for(one_rule("{event.a: 1}"))
    assert decision.outcome is Outcome.FALLBACK
    assert decision.block == "we_noticed"
    assert decision.params["cta_text"] == "Explore More"
    assert "fallback" in decision.trace.reason


def test_requires_a_missing_field_gives_the_delayed_data_block() -> None:
    rules = one_rule("{profile.purchases_90d: {gte: 3}}", "    requires: [profile.purchases_90d]\n")
    decision = decide_for(rules)
    assert decision.outcome is Outcome.DELAYED_DATA
    assert decision.block == "back_soon"
    assert "profile.purchases_90d: missing" in decision.trace.reason


def test_requires_fresh_context() -> None:
    text = ("ruleset: t\nmax_context_age: 10m\nrules:\n  - id: r\n    when: {event.a: 1}\n"
            "    requires: [event.a]\n    block: onboarding\nfallback: {block: we_noticed}\n")  # fmt: skip
    rules = ruleset(text)
    event = Event(EventType.CART_UPDATED, "e", TUESDAY, ProfileRef(email="a@b.c"), {"a": 1})
    context = fold(None, event)
    assert decide(rules, event, context, TUESDAY + timedelta(minutes=5)).outcome is Outcome.RULE
    late = decide(rules, event, context, TUESDAY + timedelta(minutes=11))
    assert late.outcome is Outcome.DELAYED_DATA


def test_the_example_rule_set_decides_as_described() -> None:
    rules = ruleset(example_text())
    premium = decide_for(rules, properties={"cart_value": 200.0})
    assert (premium.rule_id, premium.block, premium.params["discount_percent"]) == (
        "premium-offer", "personalized_offer", 20)  # fmt: skip
    assert premium.params["tier"] == "premium"
    new = decide_for(rules, EventType.PROFILE_CREATED, properties={})
    assert new.rule_id == "onboarding"
    loyal_ctx = {"logged_in": True}
    event = Event(EventType.ORDER_PLACED, "o", TUESDAY, ProfileRef(email="l@x.y"), {}, loyal_ctx)
    context = fold(None, event)
    for i in range(3):
        context = fold(context, Event(EventType.ORDER_PLACED, f"o{i}", TUESDAY - timedelta(days=i),
                                      ProfileRef(email="l@x.y"), {}))  # fmt: skip
    assert decide(rules, event, context, TUESDAY).rule_id == "loyalty"
    weekday = decide_for(rules, context={"city": "New York"}, now=TUESDAY)
    assert (weekday.rule_id, weekday.params["discount_percent"]) == ("nyc", 10)
    weekend = decide_for(rules, context={"city": "NYC"}, now=SATURDAY)
    assert (weekend.rule_id, weekend.params["discount_percent"]) == ("nyc-weekend", 15)
    assert weekend.params["window"] == "this weekend only"
    assert decide_for(rules, context={"city": "Boston"}).block == "we_noticed"
    assert (weekend.ruleset, weekend.ruleset_version) == ("cart-recovery", "4")


HOLDOUT = """
ruleset: t
holdout: {percent: 10, salt: spring-test}
rules:
  - {id: always, block: onboarding}
fallback: {block: we_noticed}
"""


def test_holdout_profiles_get_the_fallback_and_say_so() -> None:
    rules = ruleset(HOLDOUT)
    arms = {}
    for i in range(200):
        decision = decide_for(rules, profile=ProfileRef(email=f"p{i}@x.y"))
        arms[i] = decision
        if decision.variant is Variant.HOLDOUT:
            assert decision.outcome is Outcome.HOLDOUT and decision.block == "we_noticed"
            assert "treatment: rule always" in decision.trace.reason
        else:
            assert decision.rule_id == "always"
    assert 0 < sum(d.variant is Variant.HOLDOUT for d in arms.values()) < 50


def test_holdout_share_is_close_to_its_percent_and_stable() -> None:
    ids = [f"email:shopper{i}@example.com" for i in range(10_000)]
    first = [holdout_arm("spring-test", i, 10) for i in ids]
    share = sum(a is Variant.HOLDOUT for a in first) / len(ids)
    assert abs(share - 0.10) < 0.01
    assert first == [holdout_arm("spring-test", i, 10) for i in ids]


def test_the_arm_never_flips_when_identifiers_are_added() -> None:
    rules = ruleset(HOLDOUT)
    first = Event(EventType.CART_UPDATED, "1", TUESDAY, ProfileRef(email="p7@x.y"), {})
    context = fold(None, first)
    before = decide(rules, first, context, TUESDAY).variant
    more = Event(
        EventType.CART_UPDATED, "2", TUESDAY, ProfileRef(email="p7@x.y", external_id="u-9"), {}
    )
    context = fold(context, more)
    assert decide(rules, more, context, TUESDAY).variant is before


values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 500), st.floats(0, 500), st.text(max_size=5)
)


@given(st.dictionaries(st.sampled_from(["cart_value", "a", "b"]), values),
       st.dictionaries(st.sampled_from(["city", "logged_in", "session_depth"]), values))  # fmt: skip
def test_the_same_inputs_always_give_the_same_decision(
    props: dict[str, Any], ctx: dict[str, Any]
) -> None:
    rules = ruleset(example_text())
    event = Event(EventType.CART_UPDATED, "e", SATURDAY, ProfileRef(email="a@b.c"), props, ctx)
    context = fold(None, event)
    assert decide(rules, event, context, SATURDAY) == decide(rules, event, context, SATURDAY)
