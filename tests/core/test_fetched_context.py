"""Fields fetched from a platform in the context: freshness, what a rule lacks, staleness."""

from __future__ import annotations

from datetime import timedelta

from connector.core.context import absorb, fetch_state, fold, view
from connector.core.decisions import Outcome
from connector.core.events import Event, EventType, ProfileRef
from connector.core.profile_fields import fetchable, hubspot_property, klaviyo_attribute
from connector.core.rules import decide
from tests.core.rules_helpers import TUESDAY, ruleset

ADA = ProfileRef(email="ada@example.com")
RULES = ruleset(
    "ruleset: t\nrules:\n  - id: nyc\n    when: {profile.city: NYC}\n"
    "    requires: [profile.city, profile.is_new]\n    block: onboarding\n"
    "fallback: {block: we_noticed}\n"
)


def _event(kind: EventType = EventType.CART_UPDATED, n: int = 1, **properties: object) -> Event:
    return Event(kind, f"e{n}", TUESDAY + timedelta(seconds=n), ADA, dict(properties))


def _fetched(values: dict[str, object], ttl: timedelta = timedelta(minutes=10)) -> dict[str, object]:
    context = fold(None, _event())
    return absorb(context, values, ("city", "is_new", "created_at"), stamp=TUESDAY,
                  now=TUESDAY, fresh_until=TUESDAY + ttl)


def test_a_delayed_decision_names_what_it_lacks() -> None:
    event = _event()
    decision = decide(RULES, event, fold(None, event), TUESDAY)
    assert decision.outcome is Outcome.DELAYED_DATA
    assert decision.needs == ("profile.city", "profile.is_new")


def test_fetched_fields_decide_while_fresh_and_are_wanted_again_after() -> None:
    context = _fetched({"city": "NYC", "created_at": "2026-11-20T00:00:00Z"})
    assert view(context, TUESDAY)["city"] == "NYC" and view(context, TUESDAY)["is_new"]
    assert decide(RULES, _event(), context, TUESDAY).outcome is Outcome.RULE
    later = TUESDAY + timedelta(minutes=11)
    assert fetch_state(context, "city", later) == "stale"
    stale = decide(RULES, _event(), context, later)
    assert stale.outcome is Outcome.DELAYED_DATA and "profile.city" in stale.needs


def test_a_field_the_platform_lacks_counts_as_looked_at() -> None:
    context = _fetched({"created_at": "2026-01-01T00:00:00Z"})  # no city there
    decision = decide(RULES, _event(), context, TUESDAY)
    assert decision.outcome is Outcome.FALLBACK  # decided without it, not delayed


def test_a_profile_change_makes_fetched_fields_stale_and_an_event_value_wins() -> None:
    context = _fetched({"city": "NYC", "created_at": "2026-11-20T00:00:00Z"})
    changed = fold(context, _event(EventType.PROFILE_UPDATED, 2, firstname="Ada"))
    assert fetch_state(changed, "city", TUESDAY) == "stale"
    moved = fold(context, _event(EventType.PROFILE_UPDATED, 3, city="Boston"))
    assert fetch_state(moved, "city", TUESDAY) is None  # the event's own value now
    assert view(moved, TUESDAY)["city"] == "Boston"


def test_an_older_platform_value_does_not_overwrite_a_newer_event() -> None:
    context = fold(None, _event(EventType.PROFILE_UPDATED, 5, city="Boston"))
    merged = absorb(context, {"city": "NYC"}, ("city",), stamp=TUESDAY,
                    now=TUESDAY + timedelta(seconds=10), fresh_until=TUESDAY + timedelta(hours=1))
    assert view(merged, TUESDAY)["city"] == "Boston"


def test_the_field_mapping() -> None:
    assert (hubspot_property("city"), klaviyo_attribute("city")) == ("city", "location.city")
    assert (hubspot_property("first_name"), klaviyo_attribute("first_name")) == (
        "firstname", "first_name")
    assert (hubspot_property("tier"), klaviyo_attribute("tier")) == ("tier", "properties.tier")
    assert fetchable("is_new") == "created_at"
    assert fetchable("purchases_90d") is None and fetchable("cart_value") is None
