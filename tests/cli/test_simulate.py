"""`dcb simulate`: decide, render and print every property; errors name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.cli import main
from connector.core.properties_schema import PROPERTY_NAMES


@pytest.fixture(autouse=True)
def _no_configured_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCB_RULES", raising=False)
    monkeypatch.delenv("DCB_BLOCKS_DIR", raising=False)


NOW = "2026-11-28T10:00:00Z"  # a Saturday
CHECKOUT: dict[str, Any] = {
    "type": "checkout_started",
    "event_id": "e-123",
    "occurred_at": NOW,
    "profile": {"email": "ada@example.com", "external_id": "u-42"},
    "properties": {
        "cart_value": 200.0,
        "currency": "USD",
        "checkout_url": "https://shop.example/cart/42",
        "items": [{"name": "Wool jacket", "price": 200.0, "quantity": 1}],
    },
    "context": {"logged_in": True, "city": "New York", "country": "US"},
}


def write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_prints_the_decision_and_every_property(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = write(tmp_path, "event.json", CHECKOUT)
    status, out, _ = simulate(capsys, event, "--now", NOW)
    assert status == 0
    assert "decision: rule premium-offer -> personalized_offer" in out
    for name in PROPERTY_NAMES:
        assert f"  {name}:" in out
    assert "dcb_headline: 20% off your cart — today only" in out
    assert "dcb_computed_at: 2026-11-28T10:00:00Z" in out
    assert "trace:" not in out


def test_json_holds_exactly_one_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = write(tmp_path, "event.json", {**CHECKOUT, "properties": {"cart_value": 20.0}})
    profile = write(tmp_path, "profile.json", {"is_new": False, "purchases_90d": 4})
    status, out, _ = simulate(capsys, event, "--profile", profile, "--now", NOW, "--json")
    assert status == 0
    document = json.loads(out)
    assert list(document["properties"]) == list(PROPERTY_NAMES)
    assert document["properties"]["dcb_block"] == "loyalty_reward"
    assert document["decision"]["rule"] == "loyalty"
    tried = [rule["rule"] for rule in document["trace"]["rules"]]
    assert tried[:5] == ["cart-abandoned", "back-in-stock", "premium-offer", "onboarding", "loyalty"]
    onboarding = document["trace"]["rules"][3]["conditions"][0]
    assert onboarding["path"] == "profile.is_new" and onboarding["actual"] is False


def test_explain_shows_each_rule_and_condition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = write(tmp_path, "event.json", {**CHECKOUT, "properties": {}})
    status, out, _ = simulate(capsys, event, "--now", NOW, "--explain")
    assert status == 0
    trace = out.split("trace:\n", 1)[1]
    assert "rule premium-offer: no match" in trace
    assert "event.cart_value gt 150: actual missing -> no" in trace
    assert "nyc-weekend" in trace and "localized_offer" in out
    assert "Exclusive for users in NYC: 15% off this weekend only" in out


def test_fallback_when_nothing_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = {"type": "product_viewed", "profile": {"email": "x@y.z"}, "occurred_at": NOW,
             "properties": {"name": "Lamp", "url": "https://shop.example/p/lamp"}}  # fmt: skip
    status, out, _ = simulate(capsys, write(tmp_path, "e.json", quiet), "--now", NOW, "--json")
    document = json.loads(out)
    assert document["decision"]["outcome"] == "fallback"
    assert document["properties"]["dcb_headline"] == "We noticed you liked this"
    assert document["properties"]["dcb_cta_url"] == "https://shop.example/p/lamp"
    assert document["properties"]["dcb_rule"] == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "event.json: file not found"),
        ('{"type": ', "event.json:1: invalid JSON"),
        ({"type": "nope", "profile": {"email": "a@b.c"}}, "event.json: type: unknown event type"),
        ({"type": "cart_updated", "profile": {}}, "event.json: profile: needs at least one"),
    ],
)
def test_bad_event_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        write(tmp_path, "event.json", content)
    status, out, err = simulate(capsys, str(path), "--json")
    assert status == 1 and out == ""
    assert message in err and "Traceback" not in err


def test_bad_rules_profile_and_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = write(tmp_path, "event.json", CHECKOUT)
    rules = write(tmp_path, "rules.yaml", "ruleset: x\nversion: 1\nrules: []\n")
    status, _, err = simulate(capsys, event, "--rules", rules)
    assert status == 1 and "rules.yaml:" in err and "fallback" in err
    profile = write(tmp_path, "profile.json", "[1, 2]")
    status, _, err = simulate(capsys, event, "--profile", profile)
    assert status == 1 and "profile.json: expected a JSON object" in err
    status, _, err = simulate(capsys, event, "--now", "soon")
    assert status == 1 and "--now: expected an ISO 8601 time" in err


def test_a_stored_context_is_used_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from connector.cli.simulate import stored_context
    from connector.core.context import view
    from connector.core.events import parse_time

    now = parse_time(NOW, "now")
    stored = {"seen_events": [], "city": "Oslo", "stamps": {}}
    assert stored_context(stored, now) == stored
    shaped = stored_context({"is_new": True, "purchases_90d": 2, "tier": "gold"}, now)
    profile = view(shaped, now)
    assert profile["is_new"] is True and profile["purchases_90d"] == 2
    assert profile["tier"] == "gold"
