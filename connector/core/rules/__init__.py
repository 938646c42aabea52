"""Marketer-written rule trees: loading (`load_ruleset`) and deciding (`decide`).

A rule set is an ordered, nested list of rules; the first rule whose `when` holds wins,
its children are tried before its own block, and a mandatory `fallback` block is shown
when nothing matches. See `loader` for the document format and `operators` for the
comparisons.
"""

from connector.core.rules.evaluate import decide, holdout_arm, still_valid
from connector.core.rules.loader import compile_condition, load_ruleset
from connector.core.rules.model import BlockChoice, Holdout, Rule, RuleSet

__all__ = [
    "BlockChoice",
    "Holdout",
    "Rule",
    "RuleSet",
    "compile_condition",
    "decide",
    "holdout_arm",
    "load_ruleset",
    "still_valid",
]
