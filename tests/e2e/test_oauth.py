"""The public HubSpot app end to end: install through OAuth, write with the stored token,
refresh after expiry and after a 401, and an uninstall that disconnects without losing a
write. The connector and the fake HubSpot API share one clock that the test moves."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.manifest import load_manifest
from connector.runtime import STORE_FILE
from tests.e2e.oauth_harness import (
    PORTAL,
    PUBLIC_URL,
    REDIRECT_URI,
    Connector,
    MovableClock,
    oauth_settings,
    started,
)
from tests.fakes.fake_hubspot import CLIENT_ID, FakeHubSpotApi


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Connector]:
    clock = MovableClock()
    with (
        FakeHubSpotApi(clock=clock) as hubspot,
        started(oauth_settings(tmp_path / "data", hubspot), hubspot, clock) as connector,
    ):
        yield connector


def test_start_redirects_to_hubspot_with_the_manifest_scopes_and_a_state(
    connector: Connector,
) -> None:
    response = connector.client.get("/oauth/hubspot/start", base_url=PUBLIC_URL)
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://app.hubspot.com/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["scope"].split() == list(load_manifest().hubspot.scopes)
    cookie = response.headers["Set-Cookie"]
    assert f"dcb_oauth_state={query['state']}" in cookie
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie


def test_install_stores_encrypted_tokens_provisions_and_writes_land(
    connector: Connector,
) -> None:
    assert connector.hubspot.groups == {}
    page = connector.install()
    assert page.status_code == 200, page.text
    assert "installed" in page.text and PORTAL in page.text
    assert connector.grants().installed_portals() == {PORTAL}
    grant = connector.grants().load(f"hubspot-{PORTAL}")
    assert grant is not None and grant.connected
    assert grant.access_token not in repr(grant)
    with sqlite3.connect(connector.data / STORE_FILE) as db:
        stored = db.execute("SELECT tokens FROM oauth_grants").fetchone()[0]
    assert grant.access_token not in stored and grant.refresh_token not in stored
    # provisioning ran with the new portal's token
    assert "dcb" in connector.hubspot.groups
    assert "dcb_block" in connector.hubspot.definitions
    connector.checkout("ada@example.com", "e-1")
    connector.wait_for(lambda: connector.landed("ada@example.com"))
    assert set(connector.hubspot.portals_called) == {PORTAL}


def test_refresh_before_expiry_and_after_a_401(connector: Connector) -> None:
    connector.install()
    connector.checkout("a@example.com", "e-1")
    connector.wait_for(lambda: connector.landed("a@example.com"))
    assert connector.hubspot.token_calls("refresh_token") == []
    connector.clock.advance(1800 - 120)  # two minutes before expiry: refreshed early
    connector.checkout("b@example.com", "e-2")
    connector.wait_for(lambda: connector.landed("b@example.com"))
    assert len(connector.hubspot.token_calls("refresh_token")) == 1
    expired = connector.hubspot.requests[-1].headers["authorization"]
    # HubSpot stops accepting the access token early: the 401 forces one refresh
    with connector.hubspot.lock:
        connector.hubspot.access_tokens.clear()
    connector.checkout("c@example.com", "e-3")
    connector.wait_for(lambda: connector.landed("c@example.com"))
    assert len(connector.hubspot.token_calls("refresh_token")) == 2
    assert connector.hubspot.requests[-1].headers["authorization"] != expired


def test_an_uninstalled_app_disconnects_and_writes_wait_until_reinstalled(
    connector: Connector,
) -> None:
    connector.install()
    connector.checkout("a@example.com", "e-1")
    connector.wait_for(lambda: connector.landed("a@example.com"))
    connector.hubspot.uninstall(PORTAL)
    connector.checkout("b@example.com", "e-2")
    account = f"hubspot-{PORTAL}"
    connector.wait_for(lambda: connector.grants().grants()[0].status == "disconnected")
    info = connector.grants().grants()[0]
    assert "BAD_REFRESH_TOKEN" in info.reason
    assert connector.grants().installed_portals() == {PORTAL}  # kept until removed
    store = connector.service.app.extensions["dcb"]["store"]
    connector.wait_for(lambda: _pending(store, "hubspot") == 1)
    _, pauses = connector.service.app.extensions["dcb"]["clients"]["default"]["hubspot"]
    assert any("disconnected" in p.reason for p in pauses.active())
    assert not connector.landed("b@example.com")
    assert store.dead_letters(10) == []
    refreshes = len(connector.hubspot.token_calls("refresh_token"))
    connector.clock.advance(600)  # while disconnected, nobody asks HubSpot again
    time.sleep(0.3)
    assert len(connector.hubspot.token_calls("refresh_token")) == refreshes
    page = connector.install()
    assert page.status_code == 200, page.text
    assert connector.grants().load(account).connected  # type: ignore[union-attr]
    connector.clock.advance(600)
    connector.wait_for(lambda: connector.landed("b@example.com"))
    assert store.dead_letters(10) == []


def _pending(store: Any, platform: str) -> int:
    accounts = store.status(time.time())["accounts"]
    return int(sum((a.get("pending") or {}).get(platform, {}).get("writes", 0)
                   for a in accounts.values()))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda state, cookie: (None, cookie), id="missing state"),
        pytest.param(lambda state, cookie: (state, None), id="missing cookie"),
        pytest.param(lambda state, cookie: (state + "x", state + "x"), id="bad signature"),
        pytest.param(lambda state, cookie: (state, "other-browser"), id="another browser"),
    ],
)
def test_a_bad_or_missing_state_is_refused(connector: Connector, mangle: Any) -> None:
    started = connector.client.get("/oauth/hubspot/start", base_url=PUBLIC_URL)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    sent_state, cookie = mangle(state, state)
    client = connector.service.app.test_client()  # a browser with no cookie yet
    if cookie is not None:
        client.set_cookie("dcb_oauth_state", cookie, domain="hooks.shop.example")
    code = connector.hubspot.authorize(PORTAL, REDIRECT_URI)
    query = f"code={code}" + (f"&state={sent_state}" if sent_state is not None else "")
    page = client.get(f"/oauth/hubspot/callback?{query}", base_url=PUBLIC_URL)
    assert page.status_code == 400
    assert "not installed" in page.text
    assert connector.grants().installed_portals() == frozenset()
    assert connector.hubspot.token_calls() == []  # refused before any code exchange


def test_a_state_is_single_use(connector: Connector) -> None:
    started = connector.client.get("/oauth/hubspot/start", base_url=PUBLIC_URL)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    first = connector.hubspot.authorize(PORTAL, REDIRECT_URI)
    ok = connector.client.get(
        f"/oauth/hubspot/callback?code={first}&state={state}", base_url=PUBLIC_URL
    )
    assert ok.status_code == 200
    replay = connector.service.app.test_client()
    replay.set_cookie("dcb_oauth_state", state, domain="hooks.shop.example")
    again = connector.hubspot.authorize("666", REDIRECT_URI)
    page = replay.get(f"/oauth/hubspot/callback?code={again}&state={state}", base_url=PUBLIC_URL)
    assert page.status_code == 400
    assert "already used" in page.text
    assert connector.grants().installed_portals() == {PORTAL}


def test_an_expired_state_is_refused(connector: Connector) -> None:
    started = connector.client.get("/oauth/hubspot/start", base_url=PUBLIC_URL)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    connector.clock.advance(601)
    code = connector.hubspot.authorize(PORTAL, REDIRECT_URI)
    page = connector.client.get(
        f"/oauth/hubspot/callback?code={code}&state={state}", base_url=PUBLIC_URL
    )
    assert page.status_code == 400 and "expired" in page.text


def test_a_refused_code_or_a_denied_install_is_a_clear_page(connector: Connector) -> None:
    started = connector.client.get("/oauth/hubspot/start", base_url=PUBLIC_URL)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    page = connector.client.get(
        f"/oauth/hubspot/callback?code=made-up&state={state}", base_url=PUBLIC_URL
    )
    assert page.status_code == 400 and "BAD_AUTH_CODE" in page.text
    denied = connector.client.get(
        "/oauth/hubspot/callback?error=access_denied&error_description=The+user+said+no",
        base_url=PUBLIC_URL,
    )
    assert denied.status_code == 400 and "The user said no" in denied.text
    assert connector.grants().installed_portals() == frozenset()
