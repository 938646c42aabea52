"""Compiles a rule set document into a `RuleSet`, reporting every problem with its line.

Rejected: unknown keys and operators, unknown blocks, parameters a block does not
declare, duplicate rule ids, bad paths, and values of the wrong type. All problems are
collected, so a marketer sees every one at once as `file:line: reason`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.core.catalogue import Catalogue, CatalogueError
from connector.core.documents import (
    DocumentError,
    Path,
    Problem,
    line_of,
    parse_document,
    plain,
)
from connector.core.durations import parse_duration
from connector.core.rules.model import (
    AllOf,
    AnyOf,
    BlockChoice,
    Compare,
    Condition,
    FieldRef,
    Holdout,
    Not,
    Rule,
    RuleSet,
)
from connector.core.rules.operators import OPERATORS, REFERENCE_OPERATORS, OperandError

TOP_KEYS = {
    "ruleset", "version", "timezone", "description", "rules", "fallback", "delayed_data",
    "holdout", "max_context_age", "abandon_after", "new_for",
}  # fmt: skip
RULE_KEYS = {"id", "description", "when", "block", "params", "rules", "requires"}
CHOICE_KEYS = {"block", "params"}
COMBINATORS = {"all", "any", "not"}
NOW_FIELDS = {"weekday", "hour", "date", "minute"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_DELAYED_BLOCK = "back_soon"


def compile_condition(document: Any, path: Path, source: str) -> Condition:
    """The condition written at `path` in a parsed `document` (e.g. a block file's
    `valid_while`), in the rules' syntax; raises `DocumentError` with every problem."""
    compiler = _Compiler(document, source, Catalogue({}))
    node: Any = document
    for step in path:
        node = node[step]
    condition = compiler.condition(node, path)
    if compiler.problems or condition is None:
        raise DocumentError(compiler.problems or [Problem(source, 0, "empty condition")])
    return condition


def load_ruleset(text: str, source: str, catalogue: Catalogue) -> RuleSet:
    """Parse and compile a rule set; raises `DocumentError` listing every problem."""
    document = parse_document(text, source)
    return _Compiler(document, source, catalogue).compile()


class _Compiler:
    def __init__(self, document: Any, source: str, catalogue: Catalogue) -> None:
        self.doc = document
        self.source = source
        self.catalogue = catalogue
        self.problems: list[Problem] = []
        self.ids: set[str] = set()

    def fail(self, path: Path, reason: str) -> None:
        self.problems.append(Problem(self.source, line_of(self.doc, path), reason))

    def compile(self) -> RuleSet:
        doc = self.doc
        if not isinstance(doc, Mapping):
            self.fail([], "a rule set must be a mapping with `ruleset`, `rules` and `fallback`")
            raise DocumentError(self.problems)
        self.unknown_keys(doc, [], TOP_KEYS, "rule set")
        name = self.text(doc, ["ruleset"], required=True)
        version = doc.get("version", 1)
        if not isinstance(version, int | str) or isinstance(version, bool):
            self.fail(["version"], f"version must be a number or a string, got {version!r}")
        timezone = self.timezone(doc)
        rules = self.rules(doc.get("rules"), ["rules"], depth=0)
        fallback = self.choice(doc, ["fallback"], required=True)
        delayed = self.choice(doc, ["delayed_data"], required=False)
        holdout = self.holdout(doc)
        durations = {key: self.duration(doc, key) for key in
                     ("max_context_age", "abandon_after", "new_for")}  # fmt: skip
        if self.problems or fallback is None:
            raise DocumentError(self.problems)
        if delayed is None:
            block = DEFAULT_DELAYED_BLOCK if DEFAULT_DELAYED_BLOCK in self.catalogue else None
            delayed = self.resolve(block, {}, ["delayed_data"]) if block else fallback
        return RuleSet(
            name=name,
            version=str(version),
            timezone=timezone,
            rules=rules,
            fallback=fallback,
            delayed_data=delayed or fallback,
            holdout=holdout,
            max_context_age=durations["max_context_age"],
            abandon_after=durations["abandon_after"],
            new_for=durations["new_for"] or timedelta(days=30),
            source=self.source,
        )

    # --- pieces -------------------------------------------------------------------------

    def unknown_keys(self, node: Mapping[str, Any], path: Path, known: set[str], what: str) -> None:
        for key in node:
            if key not in known:
                allowed = ", ".join(sorted(known))
                self.fail([*path, key], f"unknown key {key!r} in {what} (allowed: {allowed})")

    def text(self, node: Mapping[str, Any], path: Path, *, required: bool) -> str:
        value = node.get(str(path[-1]))
        if value is None:
            if required:
                self.fail(path[:-1], f"`{path[-1]}` is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"`{path[-1]}` must be a non-empty string, got {value!r}")
            return ""
        return str(value)

    def timezone(self, doc: Mapping[str, Any]) -> str:
        name = doc.get("timezone", "UTC")
        try:
            ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(["timezone"], f"unknown time zone {name!r} (e.g. America/New_York)")
            return "UTC"
        return str(name)

    def duration(self, doc: Mapping[str, Any], key: str) -> timedelta | None:
        if key not in doc:
            return None
        try:
            return parse_duration(doc[key])
        except ValueError as exc:
            self.fail([key], f"{key}: {exc}")
            return None

    def holdout(self, doc: Mapping[str, Any]) -> Holdout | None:
        raw = doc.get("holdout")
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.fail(["holdout"], "holdout must be a mapping like {percent: 10, salt: spring}")
            return None
        self.unknown_keys(raw, ["holdout"], {"percent", "salt"}, "holdout")
        percent = raw.get("percent")
        if (
            not isinstance(percent, int | float)
            or isinstance(percent, bool)
            or not (0 <= percent <= 100)
        ):
            self.fail(["holdout", "percent"], f"percent must be 0 to 100, got {percent!r}")
            return None
        salt = self.text(raw, ["holdout", "salt"], required=True)
        return Holdout(percent=float(percent), salt=salt)

    def choice(self, node: Mapping[str, Any], path: Path, *, required: bool) -> BlockChoice | None:
        raw = node.get(str(path[-1]))
        if raw is None:
            if required:
                self.fail(path[:-1], f"`{path[-1]}` is required: the block when nothing matches")
            return None
        if not isinstance(raw, Mapping):
            self.fail(path, f"`{path[-1]}` must be a mapping like {{block: we_noticed}}")
            return None
        self.unknown_keys(raw, path, CHOICE_KEYS, str(path[-1]))
        block = self.text(raw, [*path, "block"], required=True)
        return self.resolve(block, raw.get("params"), path) if block else None

    def resolve(self, block: str, params: Any, path: Path) -> BlockChoice | None:
        spec = self.catalogue.get(block)
        if spec is None:
            known = ", ".join(sorted(self.catalogue))
            self.fail([*path, "block"], f"unknown block {block!r} (known: {known})")
            return None
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            self.fail([*path, "params"], f"params must be a mapping, got {params!r}")
            return None
        try:
            resolved = spec.resolve({str(k): plain(v) for k, v in params.items()})
        except CatalogueError as exc:
            self.fail([*path, "params"], str(exc))
            return None
        return BlockChoice(block=block, params=resolved, valid_while=spec.valid_while)

    def rules(self, raw: Any, path: Path, depth: int) -> tuple[Rule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            self.fail(path, "`rules` must be a list of rules")
            return ()
        compiled = [self.rule(item, [*path, i], depth) for i, item in enumerate(raw)]
        return tuple(r for r in compiled if r is not None)

    def rule(self, raw: Any, path: Path, depth: int) -> Rule | None:
        if not isinstance(raw, Mapping):
            self.fail(path, "a rule must be a mapping with `id`, `when` and `block`")
            return None
        self.unknown_keys(raw, path, RULE_KEYS, "rule")
        rule_id = self.text(raw, [*path, "id"], required=True)
        if rule_id in self.ids:
            self.fail([*path, "id"], f"duplicate rule id {rule_id!r}")
        self.ids.add(rule_id)
        when = self.condition(raw["when"], [*path, "when"]) if "when" in raw else None
        block = raw.get("block")
        choice = self.resolve(str(block), raw.get("params"), path) if block is not None else None
        if "params" in raw and "block" not in raw:
            self.fail([*path, "params"], "params given without a block")
        children = self.rules(raw.get("rules"), [*path, "rules"], depth + 1)
        if "block" not in raw and not children:
            self.fail(path, f"rule {rule_id!r} needs a `block` (or child `rules`)")
        requires = self.requires(raw.get("requires"), [*path, "requires"])
        return Rule(rule_id, when, choice, requires, children, line_of(self.doc, path))

    def requires(self, raw: Any, path: Path) -> tuple[str, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            self.fail(path, "requires must be a list of paths like [profile.purchases_90d]")
            return ()
        for i, item in enumerate(raw):
            self.path([*path, i], item)
        return tuple(str(item) for item in raw)

    def path(self, where: Path, path: Any) -> bool:
        if not isinstance(path, str):
            self.fail(where, f"expected a path like profile.city, got {path!r}")
            return False
        root, _, rest = path.partition(".")
        if root not in {"event", "profile", "now"} or not rest:
            self.fail(where, f"unknown path {path!r} (paths start with event., profile. or now.)")
            return False
        if root == "now" and rest not in NOW_FIELDS:
            allowed = ", ".join(f"now.{f}" for f in sorted(NOW_FIELDS))
            self.fail(where, f"unknown path {path!r} (one of {allowed})")
            return False
        return True

    def condition(self, raw: Any, path: Path) -> Condition | None:
        if not isinstance(raw, Mapping) or not raw:
            self.fail(path, "a condition must be a mapping like {profile.city: NYC}")
            return None
        parts: list[Condition] = []
        for key, value in raw.items():
            where = [*path, key]
            part = (
                self.combinator(str(key), value, where)
                if key in COMBINATORS
                else self.comparisons(key, value, where)
            )
            if part is not None:
                parts.append(part)
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def combinator(self, key: str, value: Any, where: Path) -> Condition | None:
        if key == "not":
            inner = self.condition(value, where)
            return Not(inner) if inner is not None else None
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            self.fail(where, f"`{key}` takes a non-empty list of conditions")
            return None
        items = [self.condition(v, [*where, i]) for i, v in enumerate(value)]
        kept = tuple(c for c in items if c is not None)
        return AllOf(kept) if key == "all" else AnyOf(kept)

    def comparisons(self, path: Any, spec: Any, where: Path) -> Condition | None:
        if not self.path(where, path):
            return None
        if not isinstance(spec, Mapping):
            if isinstance(spec, Sequence) and not isinstance(spec, str):
                self.fail(where, f"{path}: a list needs an operator, e.g. {{in: [...]}}")
                return None
            spec = {"eq": spec}
        compares: list[Condition] = []
        for op, expected in spec.items():
            check = OPERATORS.get(op)
            if check is None:
                known = ", ".join(OPERATORS)
                self.fail([*where, op], f"unknown operator {op!r} (one of {known})")
                continue
            if isinstance(expected, Mapping) and list(expected) == ["field"]:
                ref = self.reference(op, expected["field"], [*where, op, "field"])
                if ref is not None:
                    compares.append(Compare(str(path), str(op), ref))
                continue
            try:
                value = check[0](plain(expected))
            except OperandError as exc:
                self.fail([*where, op], f"{path} {op}: {exc}")
                continue
            if path == "now.weekday":
                self.weekdays(value, [*where, op])
            compares.append(Compare(str(path), str(op), value))
        if not compares:
            return None
        return compares[0] if len(compares) == 1 else AllOf(tuple(compares))

    def reference(self, op: str, target: Any, where: Path) -> FieldRef | None:
        """`{field: path}`: compare with another path's value (for single-value operators)."""
        if op not in REFERENCE_OPERATORS:
            allowed = ", ".join(sorted(REFERENCE_OPERATORS))
            self.fail(where, f"{op} cannot compare with a field (only {allowed} can)")
            return None
        return FieldRef(str(target)) if self.path(where, target) else None

    def weekdays(self, value: Any, where: Path) -> None:
        values = value if isinstance(value, tuple) else (value,)
        for day in values:
            if isinstance(day, str) and day not in WEEKDAYS:
                self.fail(where, f"unknown weekday {day!r} (one of {', '.join(WEEKDAYS)})")
