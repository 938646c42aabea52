from __future__ import annotations

from pathlib import Path

import pytest

from connector.cli import main


def test_check_the_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check"]) == 0
    out = capsys.readouterr().out
    assert "ok: rule set 'cart-recovery' version 4, 7 rules" in out


def test_check_reports_every_error_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "ruleset: x\nrules:\n  - id: a\n    block: nope\nfallback: {block: we_noticed}\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text("ruleset: y\nfallback: {block: we_noticed}\n")
    assert main(["rules", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:4: unknown block 'nope'" in captured.err
    assert "Traceback" not in captured.err
    assert f"{good}: ok" in captured.out


def test_a_missing_file_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml:0: file not found" in capsys.readouterr().err


def test_a_broken_user_block_names_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.yaml").write_text("id: mine\nparams:\n  x: {type: colour}\n")
    assert main(["rules", "check", "--blocks", str(tmp_path)]) == 1
    assert "mine.yaml:3: param 'x' needs a type" in capsys.readouterr().err
