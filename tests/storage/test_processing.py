"""The processor on both stores: fold, decide, render, coalesce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from blocks.loading import load_library
from connector.core.processing import Processor
from connector.core.storage import Inbound, Settlement
from connector.rulesets import load_ruleset_file
from tests.storage.conftest import Store

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def processor(store: Store) -> Processor:
    library = load_library()
    rules = load_ruleset_file(None, library.catalogue)
    return Processor(store, lambda _account: rules, library.renderer, lambda: NOW)


def send(store: Store, event: dict[str, Any], platforms: tuple[str, ...] = ("hubspot",)) -> None:
    store.enqueue([Inbound("default", event["event_id"], event, platforms)], NOW.timestamp())


def cart(
    eid: str, value: float, minutes: int = 0, email: str = "ada@example.com"
) -> dict[str, Any]:
    return {
        "type": "cart_updated", "event_id": eid,
        "occurred_at": (NOW - timedelta(minutes=minutes)).isoformat(),
        "profile": {"email": email}, "properties": {"cart_value": value},
    }  # fmt: skip


def pending(store: Store, platform: str = "hubspot") -> dict[str, dict[str, str]]:
    return {
        w.profile_key: dict(w.properties) for w in store.take_due("default", platform, 100, 1e12)
    }


def test_an_event_becomes_a_pending_property_set(store: Store, processor: Processor) -> None:
    send(store, cart("e1", 200.0))
    assert processor.run_once() == 1
    [props] = pending(store).values()
    assert props["dcb_block"] == "personalized_offer"
    assert props["dcb_rule"] == "premium-offer"
    assert props["dcb_variant"] == "treatment"
    assert "20%" in props["dcb_headline"]
    assert store.claim("again", 10, 1e12) == []  # settled


def test_a_late_older_event_never_brings_back_an_older_decision(
    store: Store, processor: Processor
) -> None:
    send(store, cart("new", 200.0, minutes=1))
    processor.run_once()
    send(store, cart("old", 20.0, minutes=30))
    processor.run_once()
    [props] = pending(store).values()
    assert props["dcb_block"] == "personalized_offer"


def test_one_batch_decides_once_per_profile_with_its_newest_event(
    store: Store, processor: Processor
) -> None:
    decided = []
    processor.on_decided = decided.append
    send(store, cart("a", 20.0, minutes=5))
    send(store, cart("b", 300.0, minutes=1))
    send(store, cart("c", 300.0, email="bob@example.com"))
    assert processor.run_once() == 3
    assert sorted(d.profile_key for d in decided) == [
        "email:ada@example.com",
        "email:bob@example.com",
    ]
    assert pending(store)["email:ada@example.com"]["dcb_block"] == "personalized_offer"


def test_an_unchanged_decision_is_not_queued_again(store: Store, processor: Processor) -> None:
    send(store, cart("a", 200.0))
    processor.run_once()
    [write] = store.take_due("default", "hubspot", 10, 1e12)
    store.settle([Settlement(write, "written")], NOW.timestamp())
    send(store, cart("b", 210.0))
    processor.run_once()
    assert pending(store) == {}


def test_identifiers_link_events_to_one_profile(store: Store, processor: Processor) -> None:
    send(store, {"type": "profile_created", "event_id": "p", "occurred_at": NOW.isoformat(),
                 "profile": {"email": "ada@example.com", "hubspot_id": "101"}})  # fmt: skip
    processor.run_once()
    send(store, {"type": "session_started", "event_id": "s", "occurred_at": NOW.isoformat(),
                 "profile": {"hubspot_id": "101"}})  # fmt: skip
    processor.run_once()
    props = pending(store)
    assert list(props) == ["email:ada@example.com"]
    assert props["email:ada@example.com"]["dcb_block"] == "onboarding"


def test_a_profile_no_platform_can_address_is_not_queued(
    store: Store, processor: Processor
) -> None:
    event = cart("x", 10.0)
    event["profile"] = {"external_id": "u-1"}
    send(store, event, platforms=("hubspot", "klaviyo"))
    processor.run_once()
    assert pending(store, "hubspot") == {}
    assert list(pending(store, "klaviyo")) == ["external_id:u-1"]


def test_an_offer_in_flight_when_an_order_lands_is_corrected_at_once(
    store: Store, processor: Processor
) -> None:
    send(store, cart("c1", 200.0, minutes=2))
    processor.run_once()
    [offer] = store.take_due("default", "hubspot", 10, 1e12)
    assert offer.properties["dcb_block"] == "personalized_offer"
    assert store.mark_sending([offer]) == [offer]  # the offer is on its way to the platform
    order = {
        "type": "order_placed",
        "event_id": "o1",
        "occurred_at": NOW.isoformat(),
        "profile": {"email": "ada@example.com"},
        "properties": {"value": 200.0},
    }
    send(store, order)
    processor.run_once()
    store.settle([Settlement(offer, "written")], NOW.timestamp())
    [correction] = store.take_due("default", "hubspot", 10, 1e12)
    assert correction.properties["dcb_block"] != "personalized_offer"  # never left standing
