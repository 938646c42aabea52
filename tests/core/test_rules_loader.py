from __future__ import annotations

import pytest

from connector.core.documents import DocumentError
from connector.rulesets import example_text
from tests.core.rules_helpers import ruleset

BASE = "ruleset: t\nfallback: {block: we_noticed}\nrules:\n"


def problems(text: str) -> list[str]:
    with pytest.raises(DocumentError) as info:
        ruleset(text)
    return [str(p) for p in info.value.problems]


def rule(body: str) -> str:
    return BASE + "  - id: r\n" + body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (rule("    when: {event.a: {gtt: 1}}\n    block: onboarding\n"),
         "rules.yaml:5: unknown operator 'gtt'"),
        (rule("    block: nope\n"), "rules.yaml:5: unknown block 'nope'"),
        (rule("    block: onboarding\n    params: {discount: 5}\n"),
         "rules.yaml:6: block 'onboarding' has no parameter 'discount'"),
        (rule("    block: onboarding\n    params: {discount_percent: ten}\n"),
         "parameter 'discount_percent' expects integer, got 'ten'"),
        (rule("    block: onboarding\n    colour: red\n"), "rules.yaml:6: unknown key 'colour' in rule"),
        (BASE + "  - {id: a, block: onboarding}\n  - {id: a, block: onboarding}\n",
         "rules.yaml:5: duplicate rule id 'a'"),
        (rule("    when: {user.city: NYC}\n    block: onboarding\n"), "unknown path 'user.city'"),
        (rule("    when: {now.month: 3}\n    block: onboarding\n"), "unknown path 'now.month'"),
        (rule("    when: {now.weekday: {in: [saturday]}}\n    block: onboarding\n"),
         "unknown weekday 'saturday'"),
        (rule("    when: {event.a: {in: 3}}\n    block: onboarding\n"), "event.a in: expected a list"),
        (rule("    when: {event.a: [1, 2]}\n    block: onboarding\n"), "a list needs an operator"),
        (rule("    when: {event.a: {in: {field: event.b}}}\n    block: onboarding\n"),
         "rules.yaml:5: in cannot compare with a field"),
        (rule("    when: {event.a: {eq: {field: user.b}}}\n    block: onboarding\n"),
         "rules.yaml:5: unknown path 'user.b'"),
        (rule("    when: {event.a: {between: [1]}}\n    block: onboarding\n"), "two bounds"),
        (rule("    when: {event.a: {exists: maybe}}\n    block: onboarding\n"), "expected true or false"),
        (rule("    when: {event.t: {within: 30 minutes}}\n    block: onboarding\n"),
         "expected a duration like 30m"),
        (rule("    when: {all: {event.a: 1}}\n    block: onboarding\n"), "`all` takes a non-empty list"),
        (rule("    when: {event.a: 1}\n"), "rule 'r' needs a `block`"),
        (rule("    block: onboarding\n    requires: [purchases]\n"), "unknown path 'purchases'"),
        ("ruleset: t\nrules: []\n", "rules.yaml:1: `fallback` is required"),
        ("rules: []\nfallback: {block: we_noticed}\n", "`ruleset` is required"),
        (BASE.replace("ruleset: t", "ruleset: t\ntimezone: Mars/Olympus"), "unknown time zone"),
        (BASE + "  []\nholdout: {percent: 120, salt: s}\n", "percent must be 0 to 100"),
        ("ruleset: t\nmax_context_age: soon\nfallback: {block: we_noticed}\n",
         "max_context_age: expected a duration"),
        ("ruleset: t\nruleset: u\nfallback: {block: we_noticed}\n", "rules.yaml:2: "),
        ("ruleset: [t\n", "rules.yaml:"),
        ("- just a list\n", "a rule set must be a mapping"),
    ],
)  # fmt: skip
def test_each_problem_is_reported_with_its_line(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_every_problem_is_reported_at_once() -> None:
    text = (
        rule("    block: nope\n")
        + "  - id: r\n    when: {event.a: {gtt: 1}}\n    block: onboarding\n"
    )
    found = problems(text)
    assert len(found) == 3  # unknown block, duplicate id, unknown operator


def test_yaml_1_2_keeps_no_on_and_times_as_strings() -> None:
    rules = ruleset(rule("    when: {event.answer: no, event.switch: on, event.at: 10:30}\n"
                         "    block: onboarding\n"))  # fmt: skip
    compares = rules.rules[0].when.items  # type: ignore[union-attr]
    assert [c.expected for c in compares] == ["no", "on", "10:30"]


def test_json_is_accepted() -> None:
    text = ('{"ruleset": "j", "rules": [{"id": "r", "when": {"event.a": {"gt": 1}}, '
            '"block": "onboarding"}], "fallback": {"block": "we_noticed"}}')  # fmt: skip
    assert ruleset(text).rules[0].id == "r"


def test_the_example_loads_with_defaults_filled_in() -> None:
    rules = ruleset(example_text())
    assert [r.id for r in rules.all_rules()] == [
        "cart-abandoned", "back-in-stock", "premium-offer", "onboarding", "loyalty", "nyc",
        "nyc-weekend"]  # fmt: skip
    assert rules.delayed_data.block == "back_soon"
    assert rules.rules[2].choice is not None
    assert rules.rules[2].choice.params["window"] == "today only"  # a declared default
    assert rules.abandon_after is None  # the account's DCB_ABANDON_AFTER applies
    assert rules.timezone == "America/New_York"


def test_delayed_data_defaults_to_back_soon() -> None:
    assert ruleset(BASE + "  []\n").delayed_data.block == "back_soon"
