"""The Klaviyo OAuth app end to end: install through `/oauth/klaviyo/start|callback` with
PKCE, write with the stored token, refresh after expiry and after a 401, a revoked grant
that disconnects the account without losing a write, and a `dcb.toml` account that is an
install. The connector and the fake Klaviyo API share one clock that the test moves."""

from __future__ import annotations

import io
import sqlite3
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask.testing import FlaskClient

from connector.accounts import load_accounts
from connector.bootstrap import build_service
from connector.cli.ops import show_status
from connector.core.oauth import code_challenge
from connector.manifest import load_manifest
from connector.runtime import STORE_FILE, Runtime
from connector.service import Service
from connector.settings import Settings
from tests.e2e.oauth_harness import EVENTS_KEY, KEY, PUBLIC_URL, MovableClock, send_checkout
from tests.fakes.fake_klaviyo import ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET, FakeKlaviyoApi

REDIRECT_URI = PUBLIC_URL + "/oauth/klaviyo/callback"
GRANT = f"klaviyo-{ACCOUNT_ID}"


def klaviyo_env(data: Path, klaviyo: FakeKlaviyoApi, **extra: str) -> dict[str, str]:
    """A connector in Klaviyo OAuth mode: the app's client id and secret, no private key."""
    return {
        "DCB_DATA_DIR": str(data),
        "DCB_PUBLIC_URL": PUBLIC_URL,
        "DCB_KLAVIYO_API_URL": klaviyo.base_url,
        "DCB_KLAVIYO_CLIENT_ID": CLIENT_ID,
        "DCB_KLAVIYO_CLIENT_SECRET": CLIENT_SECRET,
        "DCB_SECRET_KEY": KEY,
        "DCB_EVENTS_API_KEY": EVENTS_KEY,
        "DCB_FLUSH_MS": "0",
        **extra,
    }


@dataclass
class Connector:
    service: Service
    client: FlaskClient
    klaviyo: FakeKlaviyoApi
    clock: MovableClock
    data: Path

    def wait_for(self, check: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.02)
        raise AssertionError("condition not met in time")

    def start(self) -> dict[str, str]:
        """`/oauth/klaviyo/start`'s redirect query (the client keeps the state cookie)."""
        started = self.client.get("/oauth/klaviyo/start", base_url=PUBLIC_URL)
        assert started.status_code == 302
        return {k: v[0] for k, v in parse_qs(urlsplit(started.headers["Location"]).query).items()}

    def install(self) -> Any:
        """Install the app as a browser would; the callback's page."""
        query = self.start()
        code = self.klaviyo.authorize(query["redirect_uri"], query["code_challenge"])
        return self.client.get(
            f"/oauth/klaviyo/callback?code={code}&state={query['state']}", base_url=PUBLIC_URL
        )

    def checkout(self, email: str, event_id: str, key: str = EVENTS_KEY) -> None:
        send_checkout(self.client, email, event_id, key)

    def landed(self, email: str) -> bool:
        profile = self.klaviyo.by_email(email)
        return bool(profile and profile.properties.get("dcb_block"))

    def grants(self) -> Any:
        return self.service.app.extensions["dcb"]["grants"]

    def store(self) -> Any:
        return self.service.app.extensions["dcb"]["store"]


@contextmanager
def started(settings: Settings, klaviyo: FakeKlaviyoApi, clock: MovableClock) -> Iterator[Connector]:
    service = build_service(settings, Runtime(epoch=clock, sleep=clock.sleep))
    service.start()
    try:
        yield Connector(service, service.app.test_client(), klaviyo, clock, settings.data_dir)
    finally:
        service.stop(drain=False, drain_seconds=2)


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    clock = MovableClock()
    with FakeKlaviyoApi(clock=clock) as klaviyo:
        settings = Settings.from_env(klaviyo_env(tmp_path / "data", klaviyo))
        with started(settings, klaviyo, clock) as connector:
            yield connector


def _pending(store: Any) -> int:
    accounts = store.status(time.time())["accounts"]
    return int(sum((a.get("pending") or {}).get("klaviyo", {}).get("writes", 0)
                   for a in accounts.values()))  # fmt: skip


def test_start_redirects_to_klaviyo_with_a_pkce_challenge_the_scopes_and_a_state(
    connector: Connector,
) -> None:
    response = connector.client.get("/oauth/klaviyo/start", base_url=PUBLIC_URL)
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://www.klaviyo.com/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["scope"].split() == list(load_manifest().klaviyo.scopes)
    assert "accounts:read" in query["scope"].split()  # to learn whose the token is
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert "code_verifier" not in query
    cookie = response.headers["Set-Cookie"]
    assert f"dcb_oauth_state={query['state']}" in cookie and "Path=/oauth/klaviyo" in cookie
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    # the verifier stays server-side, sealed: nothing in the URL or cookie derives from it
    with sqlite3.connect(connector.data / STORE_FILE) as db:
        [(sealed,)] = db.execute("SELECT verifier FROM oauth_verifiers").fetchall()
    assert sealed.startswith("gAAAA") and sealed not in cookie


def test_install_stores_encrypted_tokens_checks_the_account_and_writes_land(
    connector: Connector,
) -> None:
    page = connector.install()
    assert page.status_code == 200, page.text
    assert "installed" in page.text and ACCOUNT_ID in page.text
    grant = connector.grants().load(GRANT)
    assert grant is not None and grant.connected and grant.platform == "klaviyo"
    with sqlite3.connect(connector.data / STORE_FILE) as db:
        stored = db.execute("SELECT tokens FROM oauth_grants").fetchone()[0]
    assert grant.access_token not in stored and grant.refresh_token not in stored
    [exchange] = connector.klaviyo.token_calls("authorization_code")
    assert "code_verifier=" in exchange.body
    # the account was learnt and checked with the new token
    assert connector.klaviyo.calls("accounts") == 1 and connector.klaviyo.calls("profiles") == 1
    connector.checkout("ada@example.com", "e-1")
    connector.wait_for(lambda: connector.landed("ada@example.com"))
    assert set(connector.klaviyo.bearer_calls) == {grant.access_token}
    assert not any(r.headers.get("authorization", "").startswith("Klaviyo-API-Key")
                   for r in connector.klaviyo.requests)  # fmt: skip


def test_refresh_before_expiry_and_after_a_401(connector: Connector) -> None:
    connector.install()
    connector.checkout("a@example.com", "e-1")
    connector.wait_for(lambda: connector.landed("a@example.com"))
    assert connector.klaviyo.token_calls("refresh_token") == []
    first = connector.klaviyo.bearer_calls[-1]
    connector.clock.advance(3600 - 120)  # two minutes before expiry: refreshed early
    connector.checkout("b@example.com", "e-2")
    connector.wait_for(lambda: connector.landed("b@example.com"))
    assert len(connector.klaviyo.token_calls("refresh_token")) == 1
    second = connector.klaviyo.bearer_calls[-1]
    assert second != first
    with connector.klaviyo.lock:  # Klaviyo stops accepting the token early: one refresh
        connector.klaviyo.access_tokens.clear()
    connector.checkout("c@example.com", "e-3")
    connector.wait_for(lambda: connector.landed("c@example.com"))
    assert len(connector.klaviyo.token_calls("refresh_token")) == 2
    assert connector.klaviyo.bearer_calls[-1] not in (first, second)


def test_a_revoked_grant_disconnects_and_writes_wait_until_reinstalled(
    connector: Connector,
) -> None:
    connector.install()
    connector.checkout("a@example.com", "e-1")
    connector.wait_for(lambda: connector.landed("a@example.com"))
    connector.klaviyo.revoke()
    connector.checkout("b@example.com", "e-2")
    connector.wait_for(lambda: connector.grants().grants()[0].status == "disconnected")
    assert "invalid_grant" in connector.grants().grants()[0].reason
    store = connector.store()
    connector.wait_for(lambda: _pending(store) == 1)
    _, pauses = connector.service.app.extensions["dcb"]["clients"]["default"]["klaviyo"]
    assert any("disconnected" in p.reason for p in pauses.active())
    assert not connector.landed("b@example.com") and store.dead_letters(10) == []
    refreshes = len(connector.klaviyo.token_calls("refresh_token"))
    connector.clock.advance(600)  # while disconnected, nobody asks Klaviyo again
    time.sleep(0.3)
    assert len(connector.klaviyo.token_calls("refresh_token")) == refreshes
    page = connector.install()
    assert page.status_code == 200, page.text
    assert connector.grants().load(GRANT).connected
    out, err = io.StringIO(), io.StringIO()
    env = klaviyo_env(connector.data, connector.klaviyo)
    assert show_status(env, out, err) == 0, err.getvalue()
    assert f"oauth {GRANT} (Klaviyo account {ACCOUNT_ID}, account default): connected" in (
        out.getvalue()
    )
    connector.clock.advance(600)
    connector.wait_for(lambda: connector.landed("b@example.com"))
    assert store.dead_letters(10) == []


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda state: (None, state), id="missing state"),
        pytest.param(lambda state: (state, None), id="missing cookie"),
        pytest.param(lambda state: (state + "x", state + "x"), id="bad signature"),
        pytest.param(lambda state: (state, "other-browser"), id="another browser"),
    ],
)
def test_a_bad_or_missing_state_is_refused(connector: Connector, mangle: Any) -> None:
    query = connector.start()
    sent_state, cookie = mangle(query["state"])
    browser = connector.service.app.test_client()  # a browser with no cookie yet
    if cookie is not None:
        browser.set_cookie("dcb_oauth_state", cookie, domain="hooks.shop.example")
    code = connector.klaviyo.authorize(REDIRECT_URI, query["code_challenge"])
    path = f"/oauth/klaviyo/callback?code={code}" + (
        f"&state={sent_state}" if sent_state is not None else ""
    )
    page = browser.get(path, base_url=PUBLIC_URL)
    assert page.status_code == 400 and "not installed" in page.text
    assert connector.grants().grants() == []
    assert connector.klaviyo.token_calls() == []  # refused before any code exchange


def test_a_state_is_single_use_and_bound_to_its_platform(connector: Connector) -> None:
    query = connector.start()
    code = connector.klaviyo.authorize(REDIRECT_URI, query["code_challenge"])
    ok = connector.client.get(
        f"/oauth/klaviyo/callback?code={code}&state={query['state']}", base_url=PUBLIC_URL
    )
    assert ok.status_code == 200, ok.text
    replay = connector.service.app.test_client()
    replay.set_cookie("dcb_oauth_state", query["state"], domain="hooks.shop.example")
    again = connector.klaviyo.authorize(REDIRECT_URI, query["code_challenge"])
    page = replay.get(
        f"/oauth/klaviyo/callback?code={again}&state={query['state']}", base_url=PUBLIC_URL
    )
    assert page.status_code == 400 and "already used" in page.text
    assert len(connector.klaviyo.token_calls("authorization_code")) == 1


def test_a_code_issued_for_another_verifier_is_refused(connector: Connector) -> None:
    query = connector.start()
    # an attacker's code, consented with a challenge of their own verifier
    code = connector.klaviyo.authorize(REDIRECT_URI, code_challenge("attacker-" + "a" * 40))
    page = connector.client.get(
        f"/oauth/klaviyo/callback?code={code}&state={query['state']}", base_url=PUBLIC_URL
    )
    assert page.status_code == 400 and "Invalid code verifier" in page.text
    assert connector.grants().grants() == []
    denied = connector.client.get(
        "/oauth/klaviyo/callback?error=access_denied&error_description=The+user+said+no",
        base_url=PUBLIC_URL,
    )
    assert denied.status_code == 400 and "Klaviyo said: access_denied" in denied.text


def test_a_dcb_toml_account_is_a_klaviyo_install(tmp_path: Path) -> None:
    config = tmp_path / "dcb.toml"
    config.write_text(textwrap.dedent(f"""
        [[accounts]]
        name = "shop-k"
        platform = "klaviyo"
        app = "public"
        account_id = "{ACCOUNT_ID}"
        api_key = {{ store = "oauth" }}
        events_api_key = {{ env = "SHOPK_EVENTS" }}
    """), "utf-8")  # fmt: skip
    clock = MovableClock()
    with FakeKlaviyoApi(clock=clock) as klaviyo:
        env = klaviyo_env(tmp_path / "data", klaviyo, DCB_CONFIG=str(config),
                          SHOPK_EVENTS="shop-k-events")  # fmt: skip
        accounts = load_accounts(env)
        shop = accounts.get("shop-k")
        assert shop is not None and shop.platforms == ("klaviyo",) and shop.app == "public"
        settings = accounts.settings
        service = build_service(settings, Runtime(epoch=clock, sleep=clock.sleep),
                                accounts=accounts)  # fmt: skip
        service.start()
        try:
            connector = Connector(service, service.app.test_client(), klaviyo, clock,
                                  settings.data_dir)  # fmt: skip
            assert connector.install().status_code == 200
            connector.checkout("kim@example.com", "k-1", key="shop-k-events")
            connector.wait_for(lambda: connector.landed("kim@example.com"))
            assert klaviyo.bearer_calls  # written with the install's token
            installs = service.app.extensions["dcb"]["installs"]
            assert installs.account_id_of("shop-k", "klaviyo") == ACCOUNT_ID
            assert installs.owner_of(ACCOUNT_ID, None, "klaviyo") == "shop-k"
            # the environment's account (Klaviyo OAuth mode too) never takes shop-k's install
            assert installs.account_id_of("default", "klaviyo") is None
        finally:
            service.stop(drain=False, drain_seconds=2)


def test_a_public_klaviyo_entry_needs_the_store_the_id_and_the_app(tmp_path: Path) -> None:
    from connector.settings import SettingsError

    config = tmp_path / "dcb.toml"
    config.write_text(textwrap.dedent("""
        [[accounts]]
        name = "shop-k"
        platform = "klaviyo"
        app = "public"
        api_key = { env = "SHOPK_KEY" }

        [[accounts]]
        name = "shop-j"
        platform = "klaviyo"
        account_id = "J1"
        api_key = { store = "oauth" }
    """), "utf-8")  # fmt: skip
    env = {"DCB_CONFIG": str(config), "SHOPK_KEY": "pk_x", "DCB_DATA_DIR": str(tmp_path)}
    with pytest.raises(SettingsError) as caught:
        load_accounts(env)
    problems = "\n".join(caught.value.problems)
    assert 'write api_key = { store = "oauth" }' in problems
    assert "needs account_id (the Klaviyo account id)" in problems
    assert 'add app = "public"' in problems
    config.write_text(textwrap.dedent("""
        [[accounts]]
        name = "shop-k"
        platform = "klaviyo"
        app = "public"
        account_id = "K1"
        api_key = { store = "oauth" }
    """), "utf-8")  # fmt: skip
    with pytest.raises(SettingsError, match="needs DCB_KLAVIYO_CLIENT_ID and DCB_KLAVIYO_CLIENT"):
        load_accounts(env)
