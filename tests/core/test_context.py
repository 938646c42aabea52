from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connector.core.context import fold, purchases_within, view
from connector.core.events import Event, EventType, ProfileRef

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ADA = ProfileRef(email="ada@example.com")


def event(kind: EventType, at: datetime = T0, eid: str | None = None, **props: Any) -> Event:
    return Event(kind, eid or f"{kind}-{at.isoformat()}", at, ADA, props)


def folded(*events: Event) -> dict[str, Any]:
    context: dict[str, Any] | None = None
    for e in events:
        context = fold(context, e)
    assert context is not None
    return context


def test_checkout_sets_the_cart_and_an_order_clears_it_and_counts() -> None:
    items = [{"product_id": "J-1", "price": 100.0, "quantity": 2}]
    ctx = folded(event(EventType.CHECKOUT_STARTED, cart_value=200.0, items=items,
                       checkout_url="https://shop.example/c"))  # fmt: skip
    assert view(ctx, T0)["cart_value"] == 200.0
    assert view(ctx, T0)["cart_items"] == 2
    ctx = fold(ctx, event(EventType.ORDER_PLACED, T0 + timedelta(minutes=5), value=200.0))
    profile = view(ctx, T0 + timedelta(minutes=6))
    assert profile["cart_value"] == 0.0
    assert profile["purchases_90d"] == 1
    assert profile["lifetime_orders"] == 1
    assert "checkout_url" not in profile


def test_cart_value_defaults_to_the_items_total() -> None:
    items = [{"price": 10.0, "quantity": 3}, {"price": 5.0}]
    assert view(folded(event(EventType.CART_UPDATED, items=items)), T0)["cart_value"] == 35.0


def test_purchases_90d_is_a_window_over_day_counters() -> None:
    orders = [event(EventType.ORDER_PLACED, T0 - timedelta(days=d)) for d in (0, 10, 89, 95)]
    ctx = folded(*orders)
    assert view(ctx, T0)["purchases_90d"] == 3
    assert view(ctx, T0 + timedelta(days=30))["purchases_90d"] == 2
    assert view(ctx, T0)["lifetime_orders"] == 4
    assert all(day >= "2026-08-30" for day in ctx["purchases_by_day"])  # old days pruned
    assert purchases_within(ctx, T0, 1) == 1


def test_purchase_history_is_missing_until_known() -> None:
    ctx = folded(event(EventType.PRODUCT_VIEWED, name="Jacket"))
    assert "purchases_90d" not in view(ctx, T0)
    assert "is_new" not in view(ctx, T0)


def test_new_means_created_recently_and_no_order() -> None:
    ctx = folded(event(EventType.PROFILE_CREATED))
    assert view(ctx, T0 + timedelta(days=29))["is_new"] is True
    assert view(ctx, T0 + timedelta(days=31))["is_new"] is False
    ctx = fold(ctx, event(EventType.ORDER_PLACED, T0 + timedelta(hours=1)))
    assert view(ctx, T0 + timedelta(days=2))["is_new"] is False


def test_a_platform_creation_date_makes_an_old_customer_not_new() -> None:
    ctx = folded(event(EventType.PROFILE_UPDATED, createdate="2024-01-01T00:00:00Z"))
    assert view(ctx, T0)["is_new"] is False
    assert view(ctx, T0)["created_at"] == "2024-01-01T00:00:00Z"


def test_context_fields_overwrite_and_custom_attributes_are_kept() -> None:
    first = Event(EventType.SESSION_STARTED, "s1", T0, ADA, {}, {"city": "Boston", "tier": "gold"})
    second = Event(EventType.PRODUCT_VIEWED, "v1", T0 + timedelta(minutes=1), ADA,
                   {"name": "Jacket"}, {"city": "New York", "logged_in": True})  # fmt: skip
    profile = view(folded(first, second), T0 + timedelta(minutes=2))
    assert profile["city"] == "New York"
    assert profile["logged_in"] is True
    assert profile["tier"] == "gold"
    assert profile["session_depth"] == 2
    assert profile["last_viewed_product"] == {"name": "Jacket"}


def test_a_late_older_event_never_overwrites_a_newer_value() -> None:
    newer = Event(EventType.SESSION_STARTED, "n", T0, ADA, {}, {"city": "New York"})
    older = Event(
        EventType.SESSION_STARTED, "o", T0 - timedelta(hours=1), ADA, {}, {"city": "Boston"}
    )
    assert view(folded(newer, older), T0)["city"] == "New York"
    cart = event(EventType.CART_UPDATED, T0 - timedelta(hours=2), cart_value=50.0)
    order = event(EventType.ORDER_PLACED, T0 - timedelta(hours=1))
    assert view(folded(order, cart), T0)["cart_value"] == 0.0  # the order came after the cart


def test_equal_times_keep_arrival_order() -> None:
    a = Event(EventType.SESSION_STARTED, "a", T0, ADA, {}, {"city": "Boston"})
    b = Event(EventType.SESSION_STARTED, "b", T0, ADA, {}, {"city": "Austin"})
    assert view(folded(a, b), T0)["city"] == "Austin"


def test_the_first_identifier_never_changes() -> None:
    later = Event(EventType.CART_UPDATED, "x", T0, ProfileRef(external_id="u-1", email="z@z.z"), {})
    ctx = folded(event(EventType.PRODUCT_VIEWED), later)
    assert ctx["first_identifier"] == "email:ada@example.com"
    assert ctx["identifiers"] == {"email": "ada@example.com", "external_id": "u-1"}


kinds = st.sampled_from(list(EventType))
events = st.builds(
    lambda kind, minutes, eid, value: Event(
        kind, f"e{eid}", T0 + timedelta(minutes=minutes), ADA, {"cart_value": value},
        {"city": f"c{eid}"},
    ),
    kinds, st.integers(0, 600), st.integers(0, 30), st.floats(0, 1000),
)  # fmt: skip


@given(st.lists(events, max_size=12), events)
def test_folding_an_event_twice_changes_nothing(history: list[Event], again: Event) -> None:
    ctx = folded(*history, again)
    assert fold(ctx, again) == ctx


@given(st.lists(events, max_size=8))
def test_fold_does_not_modify_its_input(history: list[Event]) -> None:
    ctx = folded(*history) if history else {}
    before = repr(ctx)
    for e in history:
        fold(ctx, e)
    assert repr(ctx) == before


def test_a_later_event_in_the_same_second_wins_whatever_its_precision() -> None:
    whole = T0.replace(microsecond=0)
    earlier = event(EventType.CART_UPDATED, whole, "a", cart_value=10.0)
    later = event(EventType.CART_UPDATED, whole + timedelta(milliseconds=500), "b", cart_value=20.0)
    assert view(fold(fold({}, later), earlier), T0)["cart_value"] == 20.0
    assert view(fold(fold({}, earlier), later), T0)["cart_value"] == 20.0


def test_orders_remember_the_products_bought_newest_last() -> None:
    first = event(EventType.ORDER_PLACED, T0, "o1", items=[{"product_id": "A"}, {"product_id": "B"}])
    second = event(EventType.ORDER_PLACED, T0 + timedelta(days=1), "o2", product_id="A")
    assert view(folded(first, second), T0)["purchased_products"] == ["B", "A"]
