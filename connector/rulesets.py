"""Reads rule set files: the user's (`DCB_RULES`) or the example shipped in the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from connector.core.catalogue import Catalogue
from connector.core.documents import DocumentError, Problem
from connector.core.rules import RuleSet, load_ruleset

EXAMPLE_SOURCE = "connector/examples/ruleset.yaml"


def example_text() -> str:
    """The shipped example rule set."""
    return (resources.files("connector") / "examples" / "ruleset.yaml").read_text("utf-8")


def load_ruleset_file(path: Path | None, catalogue: Catalogue) -> RuleSet:
    """Load `path` (None: the shipped example); raises `DocumentError` naming the file."""
    if path is None:
        return load_ruleset(example_text(), EXAMPLE_SOURCE, catalogue)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError([Problem(str(path), 0, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError([Problem(str(path), 0, f"cannot read: {exc}")]) from None
    return load_ruleset(text, str(path), catalogue)
