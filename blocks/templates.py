"""Checks and compiles a block file's output templates, once, when the block is loaded.

A block file's `outputs` maps output names (`CONTENT_OUTPUTS`) to Jinja templates, and
`text_limit` caps the `text` output (SMS and push). Each template is checked here, not when
it is sent: its syntax, the variables it reads (`event`, `profile`, `params`; `html` and
`text` may also read `outputs`, the plain outputs already rendered), that every
`params.X` it reads is declared, and that it uses no macros, recursive loops, includes or
inheritance. Problems come back as `DocumentError` with `file:line: reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template, TemplateSyntaxError, meta, nodes
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from blocks.sandbox import BlockSandbox, bound_template
from connector.core.catalogue import BlockSpec
from connector.core.documents import DocumentError, Problem, line_of
from connector.core.properties import CONTENT_OUTPUTS

#: Outputs rendered from data; `html` and `text` are composed after them.
PLAIN_OUTPUTS: tuple[str, ...] = tuple(n for n in CONTENT_OUTPUTS if n not in ("html", "text"))
COMPOSED_OUTPUTS: tuple[str, ...] = ("html", "text")
BASE_VARIABLES = frozenset({"event", "profile", "params"})
COMPOSED_VARIABLES = BASE_VARIABLES | {"outputs"}
#: Longest template source accepted (a block is a fragment, not a page).
MAX_TEMPLATE = 20_000
DEFAULT_TEXT_LIMIT = 160
MAX_TEXT_LIMIT = 1_600

_FORBIDDEN: dict[type[nodes.Node], str] = {
    nodes.Macro: "macros",
    nodes.CallBlock: "call blocks",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "import",
    nodes.Extends: "extends",
    nodes.Block: "blocks",
    # These capture output in memory, out of reach of the streamed output cap.
    nodes.AssignBlock: "set blocks ({% set %}...{% endset %})",
    nodes.FilterBlock: "filter blocks",
}


@dataclass(frozen=True, slots=True)
class Sandboxes:
    """The two environments block templates compile in: plain text, and HTML-escaping."""

    plain: BlockSandbox
    html: BlockSandbox

    @classmethod
    def create(cls) -> Sandboxes:
        return cls(plain=BlockSandbox(html=False), html=BlockSandbox(html=True))


@dataclass(frozen=True, slots=True)
class CompiledBlock:
    """A loaded block: its declaration, its compiled templates and its text limit."""

    spec: BlockSpec
    source: str
    templates: Mapping[str, Template]
    text_limit: int = DEFAULT_TEXT_LIMIT


def compile_block(
    source: str, document: Mapping[str, Any], spec: BlockSpec, sandboxes: Sandboxes
) -> CompiledBlock:
    """Check and compile every output of one parsed block file; raises `DocumentError`."""
    problems: list[Problem] = []
    text_limit = _text_limit(source, document, problems)
    raw_outputs = document.get("outputs") or {}
    if not isinstance(raw_outputs, Mapping):
        where = line_of(document, ["outputs"])
        raise DocumentError([Problem(source, where, "outputs must be a mapping")])
    templates: dict[str, Template] = {}
    for name, text in raw_outputs.items():
        where = line_of(document, ["outputs", name])
        if name not in CONTENT_OUTPUTS:
            known = ", ".join(CONTENT_OUTPUTS)
            problems.append(Problem(source, where, f"unknown output {name!r} (one of {known})"))
        elif not isinstance(text, str):
            problems.append(Problem(source, where, f"output {name!r} must be a template string"))
        else:
            template = _compile(source, name, text, where, spec, sandboxes, problems)
            if template is not None:
                templates[name] = template
    if problems:
        raise DocumentError(problems)
    return CompiledBlock(spec=spec, source=source, templates=templates, text_limit=text_limit)


def _text_limit(source: str, document: Mapping[str, Any], problems: list[Problem]) -> int:
    raw = document.get("text_limit", DEFAULT_TEXT_LIMIT)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_TEXT_LIMIT:
        where = line_of(document, ["text_limit"])
        reason = f"text_limit must be a whole number from 1 to {MAX_TEXT_LIMIT}, got {raw!r}"
        problems.append(Problem(source, where, reason))
        return DEFAULT_TEXT_LIMIT
    return int(raw)


def _compile(
    source: str,
    name: str,
    text: str,
    where: int,
    spec: BlockSpec,
    sandboxes: Sandboxes,
    problems: list[Problem],
) -> Template | None:
    """One output's compiled template, or None after appending its problems."""
    first_line = where + 1 if isinstance(text, LiteralScalarString | FoldedScalarString) else where
    if len(text) > MAX_TEMPLATE:
        problems.append(Problem(source, where, f"output {name!r} is over {MAX_TEMPLATE} chars"))
        return None
    sandbox = sandboxes.html if name == "html" else sandboxes.plain
    try:
        tree = sandbox.parse(str(text))
    except TemplateSyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        problems.append(Problem(source, line, f"output {name!r}: {exc.message}"))
        return None
    try:
        found = _tree_problems(name, tree, spec, sandbox)
    except TemplateSyntaxError as exc:
        found = [(exc.lineno or 1, exc.message or "invalid template")]
    for line, reason in found:
        problems.append(Problem(source, first_line + line - 1, f"output {name!r}: {reason}"))
    if found:
        return None
    try:
        return sandbox.from_string(bound_template(tree))
    except TemplateSyntaxError as exc:  # includes assertion errors found while compiling
        line = first_line + (exc.lineno or 1) - 1
        problems.append(Problem(source, line, f"output {name!r}: {exc.message}"))
        return None


def _tree_problems(
    name: str, tree: nodes.Template, spec: BlockSpec, sandbox: BlockSandbox
) -> list[tuple[int, str]]:
    """(template line, reason) for everything a block template may not do."""
    found: list[tuple[int, str]] = [
        (node.lineno, f"filter {node.name!r} is not available")
        for node in tree.find_all(nodes.Filter)
        if node.name not in sandbox.filters
    ]
    found.extend(
        (node.lineno, f"test {node.name!r} is not available")
        for node in tree.find_all(nodes.Test)
        if node.name not in sandbox.tests
    )
    if found:
        return found
    allowed = COMPOSED_VARIABLES if name in COMPOSED_OUTPUTS else BASE_VARIABLES
    unknown = meta.find_undeclared_variables(tree) - allowed
    if unknown:
        names = ", ".join(sorted(allowed))
        found.append((1, f"unknown variable(s) {', '.join(sorted(unknown))} (use {names})"))
    for kind, what in _FORBIDDEN.items():
        found.extend((node.lineno, f"{what} are not allowed") for node in tree.find_all(kind))
    found.extend(
        (loop.lineno, "recursive loops are not allowed")
        for loop in tree.find_all(nodes.For)
        if loop.recursive
    )
    for line, param in _params_read(tree):
        if param not in spec.params:
            declared = ", ".join(sorted(spec.params)) or "none"
            found.append((line, f"params.{param} is not declared (declared: {declared})"))
    return found


def _params_read(tree: nodes.Template) -> list[tuple[int, str]]:
    """(line, name) for every `params.X` and `params['X']` in the template."""
    reads: list[tuple[int, str]] = []
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "params":
            reads.append((node.lineno, node.attr))
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "params"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            reads.append((item.lineno, item.arg.value))
    return reads
