"""Blocks declare when their content stops being true; decisions and writes respect it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from blocks.loading import load_library
from connector.core.context import fold
from connector.core.decisions import Outcome
from connector.core.dispatch import Dispatcher
from connector.core.documents import DocumentError
from connector.core.events import Event, EventType, ProfileRef
from connector.core.ports import ProfileWrite, WriteOutcome, WriteStatus
from connector.core.processing import Processor
from connector.core.rules import decide
from connector.core.storage import Inbound, ProfileUpdate
from connector.core.validity import Revalidation
from connector.rulesets import load_ruleset_file
from tests.storage.conftest import Store

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ADA = ProfileRef(email="ada@example.com")


def rules() -> Any:
    return load_ruleset_file(None, load_library().catalogue)


def test_the_shipped_cart_offers_declare_their_validity() -> None:
    catalogue = load_library().catalogue
    assert catalogue["personalized_offer"].valid_while is not None
    assert catalogue["cart_abandonment"].valid_while is not None


def test_a_rule_whose_block_is_no_longer_true_is_passed_over() -> None:
    cart = Event(
        EventType.CART_UPDATED, "c", NOW - timedelta(minutes=5), ADA, {"cart_value": 200.0}
    )
    order = Event(EventType.ORDER_PLACED, "o", NOW, ADA, {"value": 200.0})
    context = fold(fold(None, cart), order)  # the order emptied the cart
    decision = decide(rules(), cart, context, NOW)
    assert decision.block != "personalized_offer" and decision.outcome is Outcome.FALLBACK
    [skipped] = [r for r in decision.trace.rules if r.rule_id == "premium-offer"]
    assert "no longer valid" in skipped.note


def test_a_bad_valid_while_is_reported_with_its_line(tmp_path: Any) -> None:
    (tmp_path / "mine.yaml").write_text(
        "id: mine\nvalid_while: {profile.x: {gtt: 1}}\noutputs: {headline: hi}\n"
    )
    with pytest.raises(DocumentError) as info:
        load_library(tmp_path)
    assert "mine.yaml:2: unknown operator 'gtt'" in str(info.value)


class Delivery:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        self.sent += [w.properties["dcb_block"] for w in writes]
        return [WriteOutcome(w.key, WriteStatus.WRITTEN) for w in writes]


def test_a_write_that_expired_while_waiting_is_decided_again_not_sent(store: Store) -> None:
    ruleset = rules()
    library = load_library()
    processor = Processor(store, lambda _a: ruleset, library.renderer, lambda: NOW)
    event = {
        "type": "cart_updated",
        "event_id": "c1",
        "occurred_at": NOW.isoformat(),
        "profile": {"email": "ada@example.com"},
        "properties": {"cart_value": 200.0},
    }
    store.enqueue([Inbound("default", "c1", event, ("hubspot",))], NOW.timestamp())
    processor.run_once()
    # Meanwhile the cart was emptied in the stored context (as a late-processed order
    # would), while the offer still waits to be sent.
    key = "email:ada@example.com"
    context = dict(store.load_context("default", key) or {})
    context.update(cart_value=0.0, cart_items=0)
    store.commit([ProfileUpdate("default", key, context)], [], NOW.timestamp())
    revalidation = Revalidation(store, lambda _a: ruleset, lambda: NOW)
    delivery = Delivery()
    dispatcher = Dispatcher(
        store,
        "default",
        "hubspot",
        delivery,
        100,
        lambda: NOW.timestamp(),
        flush_seconds=0,
        still_valid=revalidation.still_valid,
        redecide=revalidation.redecide,
    )
    assert dispatcher.run_once(drain=True) == 0
    assert delivery.sent == []  # the stale offer never went out
    processor.run_once()  # the fresh decision
    dispatcher.run_once(drain=True)
    assert delivery.sent and delivery.sent[-1] != "personalized_offer"


def test_a_back_in_stock_alert_holds_until_the_item_is_bought() -> None:
    ruleset = rules()
    alert = Event(
        EventType.BACK_IN_STOCK, "b", NOW, ADA, {"product_id": "sku-1", "name": "Trail shoe"}
    )
    assert decide(ruleset, alert, fold(None, alert), NOW).block == "time_sensitive_alert"
    bought = Event(
        EventType.ORDER_PLACED, "o", NOW - timedelta(minutes=5), ADA,
        {"value": 90.0, "items": [{"product_id": "sku-1", "quantity": 1}]},
    )
    context = fold(fold(None, bought), alert)  # the order arrived after the alert
    decision = decide(ruleset, alert, context, NOW)
    assert decision.block != "time_sensitive_alert"
    [skipped] = [r for r in decision.trace.rules if r.rule_id == "back-in-stock"]
    assert "no longer valid" in skipped.note
    other = Event(EventType.BACK_IN_STOCK, "b2", NOW, ADA, {"product_id": "sku-2"})
    assert decide(ruleset, other, fold(context, other), NOW).block == "time_sensitive_alert"
