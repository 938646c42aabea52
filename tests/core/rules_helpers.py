"""Shared helpers for the rule engine's tests."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from blocks.declarations import load_catalogue
from connector.core.catalogue import Catalogue
from connector.core.context import fold
from connector.core.decisions import Decision
from connector.core.events import Event, EventType, ProfileRef
from connector.core.rules import RuleSet, decide, load_ruleset

SATURDAY = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 10:00 in New York
TUESDAY = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    return load_catalogue()


def ruleset(text: str) -> RuleSet:
    return load_ruleset(text, "rules.yaml", catalogue())


def decide_for(
    rules: RuleSet,
    kind: EventType = EventType.CART_UPDATED,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    now: datetime = TUESDAY,
    profile: ProfileRef | None = None,
) -> Decision:
    event = Event(kind, "e-1", now, profile or ProfileRef(email="ada@example.com"),
                  properties or {}, context or {})  # fmt: skip
    return decide(rules, event, fold(None, event), now)


def one_rule(when: str, extra: str = "") -> RuleSet:
    return ruleset(
        f"ruleset: t\nrules:\n  - id: r\n    when: {when}\n    block: onboarding\n{extra}"
        "fallback: {block: we_noticed}\n"
    )
