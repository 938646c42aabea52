"""`dcb identity sign`: the token the connector verifies, or a message saying what is wrong."""

from __future__ import annotations

import pytest

from connector.cli import main
from webhooks.identity import verify_identity


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out.strip(), err


def test_sign_prints_a_token_every_listed_secret_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCB_IDENTITY_SECRET", "new-secret,old-secret")
    status, token, _ = run(capsys, "identity", "sign", "Ada@Example.com")
    assert status == 0
    assert verify_identity(token, secrets=["new-secret"]).email == "ada@example.com"
    status, token, _ = run(capsys, "identity", "sign", "--external-id", "u-42")
    assert status == 0 and verify_identity(token, secrets=["new-secret"]).external_id == "u-42"


def test_sign_says_what_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DCB_IDENTITY_SECRET", raising=False)
    status, out, err = run(capsys, "identity", "sign", "ada@example.com")
    assert (status, out) == (1, "") and "DCB_IDENTITY_SECRET is not set" in err
    monkeypatch.setenv("DCB_IDENTITY_SECRET", "s")
    status, out, err = run(capsys, "identity", "sign", "not-an-email")
    assert status == 1 and "--external-id" in err
