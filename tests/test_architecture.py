"""Imports point inward: the core imports nothing outward, adapters only the core.

The core may use `threading` locks (policies shared by worker threads) and `logging`, but
never the clock, the environment, randomness or I/O: those are injected.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUR_PACKAGES = {"connector", "adapters", "blocks", "webhooks"}
FORBIDDEN_IN_CORE = {
    "flask", "werkzeug", "redis", "requests", "urllib3", "httpx", "http", "jinja2",
    "markupsafe", "hubspot", "klaviyo_api", "openapi_client", "sqlite3", "os", "socket",
    "subprocess", "time", "random", "prometheus_client",
}  # fmt: skip


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def files_under(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", files_under("connector/core"), ids=str)
def test_core_imports_nothing_outward(path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN_IN_CORE, f"{path}: imports {name}"
        if top in OUR_PACKAGES:
            assert name.startswith("connector.core"), f"{path}: imports {name}"


@pytest.mark.parametrize(
    "path", files_under("adapters") + files_under("blocks") + files_under("webhooks"), ids=str
)
def test_outer_packages_import_only_the_core(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    for name in imports_of(path):
        top = name.split(".")[0]
        if top not in OUR_PACKAGES or top == package:
            continue
        assert name.startswith("connector.core"), f"{path}: imports {name}"


@pytest.mark.parametrize("path", files_under("adapters"), ids=str)
def test_platform_adapters_never_import_each_other(path: Path) -> None:
    parts = path.relative_to(ROOT).parts
    others = {"klaviyo": "adapters.hubspot", "hubspot": "adapters.klaviyo"}
    other = others.get(parts[1]) if len(parts) > 2 else None
    if other:
        assert not any(n.startswith(other) for n in imports_of(path)), f"{path} imports {other}"


def test_the_core_reads_no_clock() -> None:
    for path in files_under("connector/core"):
        text = path.read_text(encoding="utf-8")
        for call in ("datetime.now(", "datetime.utcnow(", "time.time(", "os.environ"):
            assert call not in text, f"{path}: {call}"
