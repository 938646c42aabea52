"""Marketer-written documents (rule sets, block files): YAML 1.2 or JSON, with line numbers.

A YAML 1.2 loader keeps `no`, `on` and `10:30` as strings, and every mapping and sequence
remembers where it came from, so an error anywhere in a document can say `file:line: reason`.
Parsing text is pure; reading the file is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

Path = Sequence[str | int]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document, at a line (1-based; 0 when unknown)."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


class DocumentError(ValueError):
    """A document has one or more problems; `problems` lists every one."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


def parse_document(text: str, source: str) -> Any:
    """Parse YAML 1.2 (JSON is YAML) keeping positions; duplicate keys are an error.

    Raises `DocumentError` with the line of the syntax error.
    """
    yaml = YAML(typ="rt", pure=True)
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise DocumentError([Problem(source, line, reason or "invalid YAML")]) from None
    except YAMLError as exc:
        raise DocumentError([Problem(source, 0, f"invalid YAML: {exc}")]) from None


def line_of(document: Any, path: Path) -> int:
    """The 1-based line where `path` (keys and indexes from the root) is written.

    Walks as deep as the path exists and answers the line of the deepest node found, so a
    missing key reports the line of the mapping that lacks it.
    """
    line = 1
    node = document
    for step in path:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                found = lc.item(step) if isinstance(step, int) else lc.key(step)
                line = found[0] + 1
            node = node[step]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def plain(value: Any) -> Any:
    """ruamel's scalar and container subclasses as plain Python values (dicts, lists)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    return value
