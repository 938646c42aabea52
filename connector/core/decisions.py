"""What the rules decided for one event and profile, and why.

A `Decision` names the block to render with its resolved parameters, how it was reached
(`outcome`) and a `Trace` of everything the evaluation looked at, so any decision can be
explained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    RULE = "rule"  # a rule matched
    FALLBACK = "fallback"  # nothing matched
    DELAYED_DATA = "delayed_data"  # a rule that could win needs data the context lacks
    HOLDOUT = "holdout"  # the profile is in the control group


class Variant(StrEnum):
    TREATMENT = "treatment"
    HOLDOUT = "holdout"


@dataclass(frozen=True, slots=True)
class ConditionTrace:
    """One comparison: `path op expected` against the `actual` value found."""

    path: str
    op: str
    expected: Any
    actual: Any
    result: bool
    missing: bool = False

    def describe(self) -> str:
        actual = "missing" if self.missing else repr(self.actual)
        verdict = "yes" if self.result else "no"
        return f"{self.path} {self.op} {self.expected!r}: actual {actual} -> {verdict}"


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule tried: its conditions, whether it matched, and a note (e.g. why skipped)."""

    rule_id: str
    depth: int
    matched: bool
    conditions: tuple[ConditionTrace, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class Trace:
    rules: tuple[RuleTrace, ...] = ()
    reason: str = ""

    def lines(self) -> list[str]:
        """The trace as indented human-readable lines."""
        out: list[str] = []
        for rule in self.rules:
            pad = "  " * rule.depth
            verdict = "matched" if rule.matched else "no match"
            note = f" ({rule.note})" if rule.note else ""
            out.append(f"{pad}rule {rule.rule_id}: {verdict}{note}")
            out.extend(f"{pad}  - {c.describe()}" for c in rule.conditions)
        if self.reason:
            out.append(self.reason)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "rules": [
                {
                    "rule": r.rule_id,
                    "depth": r.depth,
                    "matched": r.matched,
                    "note": r.note,
                    "conditions": [
                        {
                            "path": c.path,
                            "op": c.op,
                            "expected": c.expected,
                            "actual": None if c.missing else c.actual,
                            "missing": c.missing,
                            "result": c.result,
                        }
                        for c in r.conditions
                    ],
                }
                for r in self.rules
            ],
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The chosen block for one profile at one moment."""

    outcome: Outcome
    block: str
    params: Mapping[str, Any]
    rule_id: str | None
    ruleset: str
    ruleset_version: str
    variant: Variant = Variant.TREATMENT
    trace: Trace = field(default_factory=Trace)
    #: For DELAYED_DATA: the `requires` paths of the rule that could win and lacks them
    #: (missing, fetched too long ago, or all of them when the context is too old).
    needs: tuple[str, ...] = ()
