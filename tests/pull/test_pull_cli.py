"""`dcb blocks url` mints signed URLs the running connector accepts."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.cli import main
from tests.pull.conftest import SIGNING_KEY, checkout, give_context, open_pulling, settings


def mint(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["blocks", "url", *argv])
    out, err = capsys.readouterr()
    return status, out.strip(), err.strip()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DCB_RULES", "DCB_BLOCKS_DIR", "DCB_PUBLIC_URL", "DCB_PULL_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DCB_URL_SIGNING_KEY", f"{SIGNING_KEY},old-key")


def test_a_minted_url_reads_the_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, url, _ = mint(
        capsys, "klaviyo", "ada@example.com", "--ttl", "10m", "--format", "text",
        "--base", "https://dcb.shop.example",
    )  # fmt: skip
    assert status == 0
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "dcb.shop.example")
    assert parts.path == "/v1/blocks/klaviyo/default/ada@example.com"
    expires = int(parse_qs(parts.query)["expires"][0])
    assert 595 <= expires - time.time() <= 600
    running = open_pulling("embedded", settings(tmp_path / "data"))
    try:
        give_context(running.store, checkout("ada@example.com"))
        answer = running.client.get(f"{parts.path}?{parts.query}")
        assert answer.status_code == 200, answer.text
        assert answer.content_type.startswith("text/plain")
        assert "20% off" in answer.get_data(as_text=True)
        assert answer.headers["Cache-Control"].startswith("private")
        status, cdn_url, _ = mint(capsys, "klaviyo", "ada@example.com", "--cdn")
        cdn = urlsplit(cdn_url)
        answer = running.client.get(f"{cdn.path}?{cdn.query}")
        assert answer.headers["Cache-Control"].startswith("public")
    finally:
        running.service.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("klaviyo", "ada@example.com", "--ttl", "soon"), "--ttl: expected a duration"),
        (("klaviyo", "ada@example.com", "--ttl", "400d"), "--ttl: must be"),
        (("mailchimp", "ada@example.com"), "unknown platform"),
        (("hubspot", "klaviyo_id:01H"), "hubspot does not address profiles by klaviyo_id"),
    ],
)
def test_bad_input_is_named(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    status, _, err = mint(capsys, *argv)
    assert status == 1 and message in err


def test_without_a_signing_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DCB_URL_SIGNING_KEY")
    status, _, err = mint(capsys, "klaviyo", "ada@example.com")
    assert status == 1 and "DCB_URL_SIGNING_KEY" in err
