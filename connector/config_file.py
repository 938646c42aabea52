"""Reading `dcb.toml` with line numbers, and its credential references.

`tomllib` parses the file (its syntax errors already carry a line); what it parsed carries
no lines, so `KeyLines` finds them in the text: the line of each top-level key, of each
`[[accounts]]` entry's header and of every key inside it. A problem found later (an
unknown key, a literal secret) is then reported as `dcb.toml:12: ...`.

A credential is never written in the file, only a reference to where it lives:

    access_token = { env = "SHOP1_HUBSPOT_TOKEN" }   # an environment variable
    access_token = { store = "oauth" }               # the encrypted token store

`Problems` gathers every problem so one error lists them all.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_\-]+))\s*[=.]""")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Where `{ store = ... }` may point: the encrypted token store filled by OAuth installs.
TOKEN_STORES = frozenset({"oauth"})


class Problems:
    """Problems found in one file, each with the line it is on (0: the file as a whole)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._found: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        where = f"{self.path}:{line}" if line else str(self.path)
        self._found.append((line, f"{where}: {message}"))

    @property
    def items(self) -> list[str]:
        """Every problem, in line order."""
        return [text for _, text in sorted(self._found, key=lambda found: found[0])]


@dataclass
class KeyLines:
    """Lines of keys in a TOML text: top-level keys, other tables' keys, and per
    `[[accounts]]` entry its header line and its keys' lines."""

    top: dict[str, int] = field(default_factory=dict)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    entries: list[tuple[int, dict[str, int]]] = field(default_factory=list)

    @classmethod
    def scan(cls, text: str, array: str = "accounts") -> KeyLines:
        lines = cls()
        where: dict[str, int] = lines.top
        for number, line in enumerate(text.splitlines(), 1):
            header = _HEADER.match(line)
            if header:
                name = header.group(2).replace('"', "").replace("'", "").replace(" ", "")
                if header.group(1) == "[[" and name == array:
                    lines.entries.append((number, {}))
                    where = lines.entries[-1][1]
                elif name.startswith(array + ".") and lines.entries:
                    where = lines.entries[-1][1]  # a sub-table of the current entry
                    where.setdefault(name.split(".")[1], number)
                else:
                    where = lines.tables.setdefault(name, {})
                continue
            key = _KEY.match(line)
            if key:
                where.setdefault(next(g for g in key.groups() if g), number)
        return lines

    def entry(self, index: int, count: int) -> tuple[int, dict[str, int]]:
        """The header line and key lines of entry `index` of `count` (when the entries are
        not `[[accounts]]` tables, e.g. an inline array, the `accounts` key's line)."""
        if len(self.entries) == count:
            return self.entries[index]
        return self.top.get("accounts", 0), {}


def read_toml(path: Path, problems: Problems) -> tuple[dict[str, Any], KeyLines] | None:
    """The parsed file and its key lines, or None after recording why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(0, "file not found")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(0, f"cannot read: {exc}")
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match.group(1)) if match else 0
        reason = re.sub(r" \(at line .*\)$", "", str(exc))
        problems.add(line, f"not valid TOML: {reason}")
        return None
    return data, KeyLines.scan(text)


@dataclass(frozen=True, slots=True)
class EnvRef:
    """A credential in an environment variable (comma-separated where rotation allows)."""

    variable: str


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A credential kept in the encrypted token store (named, e.g. "oauth")."""

    store: str


Reference = EnvRef | StoreRef


def reference(value: Any, key: str, *, store_allowed: bool) -> Reference | str:
    """The reference `value` spells, or a message saying what is wrong with it."""
    how = '{ env = "VARIABLE" }' + (' or { store = "oauth" }' if store_allowed else "")
    if isinstance(value, str):
        return f"{key}: a secret is never written in this file; write {key} = {how}"
    if not isinstance(value, dict) or len(value) != 1:
        return f"{key}: expected {how}"
    ((kind, target),) = value.items()
    if kind == "env":
        if not isinstance(target, str) or not _ENV_NAME.match(target):
            return f"{key}: env must name an environment variable, got {target!r}"
        return EnvRef(target)
    if kind == "store" and store_allowed:
        if target not in TOKEN_STORES:
            return f"{key}: store must be one of {', '.join(sorted(TOKEN_STORES))}, got {target!r}"
        return StoreRef(str(target))
    return f"{key}: expected {how}, got a table with {kind!r}"
