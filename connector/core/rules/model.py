"""A compiled rule set: immutable, validated, ready to evaluate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

#: The nesting a `when` clause compiles to.


@dataclass(frozen=True, slots=True)
class FieldRef:
    """An expected value read from another path when the rule is evaluated, written
    `{field: event.product_id}`; a missing field makes the comparison false."""

    path: str


@dataclass(frozen=True, slots=True)
class Compare:
    """`path op expected`, e.g. `event.cart_value gt 150`; `expected` may be a `FieldRef`."""

    path: str
    op: str
    expected: Any


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition = Compare | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class BlockChoice:
    """A block with its parameters resolved against the catalogue (defaults filled in)."""

    block: str
    params: Mapping[str, Any]
    valid_while: Condition | None = None  # the block's own validity (from its file)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; `children` are tried when it matches, before its own block.

    A rule without a block only groups its children: when none of them matches, the
    evaluation moves on as if the rule had not matched.
    """

    id: str
    when: Condition | None
    choice: BlockChoice | None
    requires: tuple[str, ...] = ()
    children: tuple[Rule, ...] = ()
    line: int = 0


@dataclass(frozen=True, slots=True)
class Holdout:
    percent: float
    salt: str


@dataclass(frozen=True, slots=True)
class RuleSet:
    name: str
    version: str
    timezone: str
    rules: tuple[Rule, ...]
    fallback: BlockChoice
    delayed_data: BlockChoice
    holdout: Holdout | None = None
    max_context_age: timedelta | None = None
    abandon_after: timedelta | None = None
    new_for: timedelta = timedelta(days=30)
    source: str = ""

    def validity(self, block: str) -> Condition | None:
        """The `valid_while` of `block` as this rule set uses it (None: always valid)."""
        choices = [r.choice for r in self.all_rules() if r.choice is not None]
        choices += [self.fallback, self.delayed_data]
        return next((c.valid_while for c in choices if c.block == block), None)

    def all_rules(self) -> list[Rule]:
        """Every rule, depth first, in evaluation order."""
        out: list[Rule] = []
        stack = list(reversed(self.rules))
        while stack:
            rule = stack.pop()
            out.append(rule)
            stack.extend(reversed(rule.children))
        return out
