"""The site snippet with many accounts: each `dcb.toml` account's publishable key decides
that a browser event is the account's, from the account's own origins only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.accounts import ConfigError, read_accounts
from connector.bootstrap import build_service
from connector.runtime import Runtime
from connector.settings import Settings
from tests.fakes.clock import FakeClock
from tests.webhooks.test_site import BROWSER, NOW, Site

ONE, TWO = "https://one.example", "https://two.example"

CONFIG = """
[[accounts]]
name = "shop-one"
platform = "klaviyo"
api_key = { env = "ONE_KLAVIYO_KEY" }
publishable_key = "pk_one"
allowed_origins = ["https://one.example"]

[[accounts]]
name = "shop-two"
platform = "klaviyo"
api_key = { env = "TWO_KLAVIYO_KEY" }
publishable_key = ["pk_two", "pk_two_old"]
allowed_origins = ["https://two.example"]
shop_domains = ["two.example", "cdn.two.example"]
"""


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("ONE_KLAVIYO_KEY", "pk_private_one")
    monkeypatch.setenv("TWO_KLAVIYO_KEY", "pk_private_two")
    (tmp_path / "dcb.toml").write_text(CONFIG)
    settings = Settings.from_env(
        {"DCB_DATA_DIR": str(tmp_path / "data"), "DCB_CONFIG": str(tmp_path / "dcb.toml")}
    )
    clock = FakeClock()
    running = Site(build_service(settings, Runtime(clock=lambda: NOW, epoch=clock), workers=0), clock)
    yield running
    running.service.app.extensions["dcb"]["store"].close()


def test_each_key_queues_for_its_own_account(sites: Site) -> None:
    assert sites.post(origin=ONE, key="pk_one").status_code == 202
    assert sites.post(origin=TWO, key="pk_two_old").status_code == 202
    assert sorted((c.account, c.event["profile"]["browser_id"]) for c in sites.queued()) == [
        ("shop-one", BROWSER), ("shop-two", BROWSER)]  # fmt: skip


def test_a_key_works_only_from_its_own_accounts_pages(sites: Site) -> None:
    answer = sites.post(origin=TWO, key="pk_one")
    assert answer.status_code == 403 and "for this key" in answer.json["error"]
    assert sites.post(origin="https://evil.example", key="pk_one").status_code == 403
    assert sites.post(origin=ONE, key="pk_nobody").status_code == 401
    assert sites.queued() == []


def test_urls_are_checked_against_the_accounts_own_domains(sites: Site) -> None:
    cdn = {"properties": {"cart_value": 5, "items": [{"image_url": "https://cdn.two.example/a.jpg"}]}}
    assert sites.post(cdn, origin=TWO, key="pk_two").status_code == 202
    assert sites.post(cdn, origin=ONE, key="pk_one").status_code == 400  # not shop-one's domain


def test_a_publishable_key_serves_one_account(tmp_path: Path) -> None:
    (tmp_path / "dcb.toml").write_text(CONFIG.replace('"pk_two", ', '"pk_one", '))
    environ = {"ONE_KLAVIYO_KEY": "k1", "TWO_KLAVIYO_KEY": "k2"}
    with pytest.raises(ConfigError) as info:
        read_accounts(tmp_path / "dcb.toml", Settings(), environ)
    assert "the same publishable key serves 'shop-one' and 'shop-two'" in str(info.value)


def test_a_publishable_key_needs_its_origins(tmp_path: Path) -> None:
    broken = CONFIG.replace('allowed_origins = ["https://one.example"]\n', "")
    (tmp_path / "dcb.toml").write_text(broken)
    environ = {"ONE_KLAVIYO_KEY": "k1", "TWO_KLAVIYO_KEY": "k2"}
    with pytest.raises(ConfigError) as info:
        read_accounts(tmp_path / "dcb.toml", Settings(), environ)
    assert "dcb.toml:6: account 'shop-one': allowed_origins is required" in str(info.value)
