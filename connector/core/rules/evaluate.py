"""Evaluates a rule set: first match wins, children before their parent's block.

`decide` is pure and deterministic: the same rule set, event, context and `now` always
give the same decision and the same trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from connector.core.context import fetch_state, first_identifier, view
from connector.core.decisions import ConditionTrace, Decision, Outcome, RuleTrace, Trace, Variant
from connector.core.events import Event, format_time, parse_time
from connector.core.rules.loader import WEEKDAYS
from connector.core.rules.model import (
    AllOf,
    AnyOf,
    BlockChoice,
    Compare,
    Condition,
    FieldRef,
    Not,
    Rule,
    RuleSet,
)
from connector.core.rules.operators import OPERATORS

_MISSING = object()


class Scope:
    """What paths resolve against: the event, the profile view and `now`."""

    def __init__(self, event: Event, profile: Mapping[str, Any], now: datetime, tz: str) -> None:
        local = now.astimezone(_zone(tz))
        self.now = now
        self.roots: dict[str, Mapping[str, Any]] = {
            "event": {
                **event.properties,
                "type": event.type.value,
                "occurred_at": format_time(event.occurred_at),
            },
            "profile": profile,
            "now": {
                "weekday": WEEKDAYS[local.weekday()],
                "hour": local.hour,
                "minute": local.minute,
                "date": local.date().isoformat(),
            },
        }

    def get(self, path: str) -> Any:
        """The value at a dotted path, or `_MISSING`."""
        root, *steps = path.split(".")
        node: Any = self.roots.get(root, _MISSING)
        for step in steps:
            if isinstance(node, Mapping) and step in node:
                node = node[step]
            else:
                return _MISSING
        return _MISSING if node is None else node


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def holdout_arm(salt: str, identifier: str, percent: float) -> Variant:
    """The stable arm for a profile: sha256(salt:identifier) placed on [0, 100)."""
    digest = hashlib.sha256(f"{salt}:{identifier}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64 * 100
    return Variant.HOLDOUT if position < percent else Variant.TREATMENT


def decide(ruleset: RuleSet, event: Event, context: Mapping[str, Any], now: datetime) -> Decision:
    """Decide for `event` with the stored `context` (the event already folded in)."""
    profile = view(context, now, new_for=ruleset.new_for)
    scope = Scope(event, profile, now, ruleset.timezone)
    walk = _Walk(ruleset, scope, context)
    found = walk.first_match(ruleset.rules, depth=0)
    arm = _arm(ruleset, context)
    if arm is Variant.HOLDOUT:
        would = f"rule {found[1].id}" if found and found[0] == "rule" else "no rule"
        reason = f"holdout: the profile is in the control group (treatment: {would})"
        return walk.decision(Outcome.HOLDOUT, ruleset.fallback, None, reason, arm)
    if found is not None and found[0] == "delayed":
        delayed = walk.decision(Outcome.DELAYED_DATA, ruleset.delayed_data, None, found[2])
        return replace(delayed, needs=walk.needs)
    if found is None:
        return walk.decision(Outcome.FALLBACK, ruleset.fallback, None, "no rule matched: fallback")
    _, rule, choice = found
    return walk.decision(Outcome.RULE, choice, rule.id, f"rule {rule.id} matched first")


def still_valid(
    ruleset: RuleSet, block: str, event: Event, context: Mapping[str, Any], now: datetime
) -> bool:
    """Whether `block`'s content still holds for the profile at `now` (its `valid_while`
    against the stored context and the profile's newest event); checked just before a
    decided write goes out."""
    condition = ruleset.validity(block)
    if condition is None:
        return True
    profile = view(context, now, new_for=ruleset.new_for)
    walk = _Walk(ruleset, Scope(event, profile, now, ruleset.timezone), context)
    return walk.test(condition, [])


def _arm(ruleset: RuleSet, context: Mapping[str, Any]) -> Variant:
    identifier = first_identifier(context)
    if ruleset.holdout is None or identifier is None:
        return Variant.TREATMENT
    return holdout_arm(ruleset.holdout.salt, identifier, ruleset.holdout.percent)


class _Walk:
    def __init__(self, ruleset: RuleSet, scope: Scope, context: Mapping[str, Any]) -> None:
        self.ruleset = ruleset
        self.scope = scope
        self.context = context
        self.traces: list[RuleTrace] = []
        self.needs: tuple[str, ...] = ()

    def decision(
        self,
        outcome: Outcome,
        choice: BlockChoice,
        rule_id: str | None,
        reason: Any,
        variant: Variant = Variant.TREATMENT,
    ) -> Decision:
        return Decision(
            outcome=outcome,
            block=choice.block,
            params=choice.params,
            rule_id=rule_id,
            ruleset=self.ruleset.name,
            ruleset_version=self.ruleset.version,
            variant=variant,
            trace=Trace(tuple(self.traces), str(reason)),
        )

    def first_match(self, rules: tuple[Rule, ...], depth: int) -> tuple[Any, ...] | None:
        """("rule", rule, choice), ("delayed", rule, reason) or None."""
        for rule in rules:
            lacking = self.lacking(rule)
            if lacking:
                self.traces.append(RuleTrace(rule.id, depth, False, (), lacking))
                return ("delayed", rule, f"delayed data: rule {rule.id} {lacking}")
            conditions: list[ConditionTrace] = []
            matched = rule.when is None or self.test(rule.when, conditions)
            index = len(self.traces)
            self.traces.append(RuleTrace(rule.id, depth, matched, tuple(conditions)))
            if not matched:
                continue
            found = self.first_match(rule.children, depth + 1)
            if found is not None:
                return found
            if rule.choice is not None and self.still_valid(rule, index):
                return ("rule", rule, rule.choice)
        return None

    def still_valid(self, rule: Rule, index: int) -> bool:
        """Whether the matched rule's block is still true (its `valid_while`); when not, the
        rule's trace (at `index`) says so and the evaluation moves on, as if the rule had
        not matched."""
        condition = rule.choice.valid_while if rule.choice is not None else None
        if condition is None or rule.choice is None:
            return True
        conditions: list[ConditionTrace] = []
        if self.test(condition, conditions):
            return True
        traced = self.traces[index]
        note = f"block {rule.choice.block} is no longer valid (valid_while)"
        self.traces[index] = RuleTrace(
            rule.id, traced.depth, False, (*traced.conditions, *conditions), note
        )
        return False

    def lacking(self, rule: Rule) -> str:
        """Why a rule cannot be decided on yet, or "" when its data is there (noting in
        `needs` what it lacks)."""
        missing = [p for p in rule.requires if not self.known(p)]
        if missing:
            self.needs = tuple(missing)
            return "requires " + ", ".join(missing) + ": missing"
        limit = self.ruleset.max_context_age
        if rule.requires and limit is not None:
            updated = self.context.get("updated_at")
            if updated is None or self.scope.now - parse_time(updated, "updated_at") > limit:
                self.needs = rule.requires
                return f"requires context newer than {limit}: last updated {updated or 'never'}"
        return ""

    def known(self, path: str) -> bool:
        """Whether `path` has a value, or a platform said recently that it has none; a
        value fetched from a platform counts only while fresh (see `context.absorb`)."""
        root, _, rest = path.partition(".")
        if root == "profile" and rest:
            state = fetch_state(self.context, rest.split(".")[0], self.scope.now)
            if state is not None:
                return state == "fresh"
        return self.scope.get(path) is not _MISSING

    def test(self, condition: Condition, out: list[ConditionTrace]) -> bool:
        if isinstance(condition, Compare):
            return self.compare(condition, out)
        if isinstance(condition, AllOf):
            return all(self.test(c, out) for c in condition.items)
        if isinstance(condition, AnyOf):
            return any(self.test(c, out) for c in condition.items)
        assert isinstance(condition, Not)
        return not self.test(condition.item, out)

    def compare(self, c: Compare, out: list[ConditionTrace]) -> bool:
        actual = self.scope.get(c.path)
        expected = c.expected
        if isinstance(expected, FieldRef):  # a missing field compares false, like a value
            expected = self.scope.get(expected.path)
        missing = actual is _MISSING
        if c.op == "exists":
            result = (not missing) is bool(expected)
        elif missing or expected is _MISSING:
            result = False
        else:
            result = bool(OPERATORS[c.op][1](actual, expected, self.scope.now))
        wanted = _shown(expected)
        if isinstance(c.expected, FieldRef):
            value = "missing" if expected is _MISSING else repr(wanted)
            wanted = f"{c.expected.path} ({value})"
        shown = None if missing else actual
        out.append(ConditionTrace(c.path, c.op, wanted, shown, result, missing))
        return result


def _shown(expected: Any) -> Any:
    if isinstance(expected, timedelta):
        return f"{int(expected.total_seconds())}s"
    return list(expected) if isinstance(expected, tuple) else expected
