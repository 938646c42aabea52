"""`dcb blocks list` and `dcb blocks render`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.cli import main


@pytest.fixture(autouse=True)
def _no_configured_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCB_RULES", raising=False)
    monkeypatch.delenv("DCB_BLOCKS_DIR", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["blocks", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_list_names_every_block_with_its_params(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "list")
    assert status == 0
    assert "personalized_offer: A discount on the shopper's cart" in out
    assert "  discount_percent (integer) = 20" in out
    assert out.count("\n  ") > 9


def test_render_prints_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = json.dumps({"discount_percent": 15, "city": "NYC", "window": "this weekend only"})
    status, out, _ = run(capsys, "render", "localized_offer", "--params", params)
    assert status == 0
    assert "headline: Exclusive for users in NYC: 15% off this weekend only" in out
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "back_in_stock", "profile": {"email": "a@b.c"},
                                 "properties": {"variant": "M", "url": "https://s.example/p"}}))  # fmt: skip
    status, out, _ = run(capsys, "render", "time_sensitive_alert", "--event", str(event), "--json")
    outputs = json.loads(out)
    assert outputs["headline"] == "Your size M is back in stock — claim it before it's gone!"
    assert outputs["cta_url"] == "https://s.example/p"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "nope"], "unknown block 'nope'"),
        (["render", "we_noticed", "--params", "{"], "--params: invalid JSON"),
        (["render", "we_noticed", "--params", "[]"], "--params: expected a JSON object"),
        (["render", "we_noticed", "--params", '{"x": 1}'], "has no parameter 'x'"),
        (["render", "we_noticed", "--event", "missing.json"], "missing.json: file not found"),
    ],
)
def test_render_errors_exit_1(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 1 and out == "" and message in err


def test_a_failing_block_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.yaml").write_text("id: x\noutputs:\n  headline: '{{ 1 / 0 }}'\n")
    status, out, err = run(capsys, "render", "x", "--blocks", str(tmp_path))
    assert status == 1 and "x: rendering failed: ZeroDivisionError" in err


def test_a_broken_blocks_folder_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.yaml").write_text("id: x\noutputs:\n  headline: '{{ params.nope }}'\n")
    status, _, err = run(capsys, "list", "--blocks", str(tmp_path))
    assert status == 1 and "x.yaml:3: output 'headline': params.nope is not declared" in err
