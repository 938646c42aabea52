"""docs/marketers.md agrees with the manifest, and the commands it shows work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.cli import main
from connector.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "marketers.md").read_text("utf-8")


def test_the_property_table_lists_every_declared_property_in_order() -> None:
    rows = re.findall(r"^\| `(dcb_[a-z_]+)` \|", DOC, re.MULTILINE)
    assert rows == list(load_manifest().property_names)


def test_every_snippet_names_only_declared_properties() -> None:
    named = set(re.findall(r"\bdcb_[a-z_]+", DOC))
    assert named <= set(load_manifest().property_names), named


def test_the_documented_rule_set_checks_and_simulates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DCB_RULES", raising=False)
    monkeypatch.delenv("DCB_BLOCKS_DIR", raising=False)
    rules = tmp_path / "my-rules.yaml"
    rules.write_text(re.findall(r"```yaml\n(.*?)```", DOC, re.DOTALL)[0], "utf-8")
    event = str(ROOT / "examples" / "checkout.json")
    assert main(["rules", "check", str(rules)]) == 0
    assert main(["simulate", event, "--rules", str(rules), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "rule big-cart matched first" in out
    profile = tmp_path / "returning.json"
    profile.write_text('{"is_new": false, "purchases_90d": 4}', "utf-8")
    assert main(["simulate", event, "--rules", str(rules), "--profile", str(profile),
                 "--now", "2026-11-29T10:00:00Z"]) == 0
