"""Where the public HubSpot app's installs meet the accounts, end to end.

An account's HubSpot token is its portal's OAuth grant, and a webhook signed with the
app's one client secret belongs to the account of its `portalId`, only once that portal
has installed the app. Both for the environment's implicit account in OAuth mode and for
`dcb.toml`'s `app = "public"` accounts, beside a private app's account.
"""

from __future__ import annotations

import io
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.accounts import load_accounts
from connector.cli import accounts as cli
from connector.cli.ops import show_status
from connector.runtime import Runtime
from tests.e2e.oauth_harness import (
    KEY,
    PUBLIC_URL,
    Connector,
    MovableClock,
    oauth_env,
    oauth_settings,
    portal_item,
    started,
)
from tests.fakes.fake_hubspot import CLIENT_ID, CLIENT_SECRET, FakeHubSpotApi

PRIVATE_TOKEN = "pat-private"
PRIVATE_SECRET = "private-app-secret"


@pytest.fixture
def implicit(tmp_path: Path) -> Iterator[Connector]:
    """The environment's one account in OAuth mode: no access token, the app's id and secret."""
    clock = MovableClock()
    with (
        FakeHubSpotApi(clock=clock) as hubspot,
        started(oauth_settings(tmp_path / "data", hubspot), hubspot, clock) as connector,
    ):
        yield connector


def oauth_calls(connector: Connector, since: int) -> list[str]:
    """The portals of the OAuth-authenticated CRM calls made after the first `since`."""
    with connector.hubspot.lock:
        return connector.hubspot.portals_called[since:]


def test_implicit_account_takes_webhooks_only_from_the_installed_portal(
    implicit: Connector,
) -> None:
    contact = implicit.hubspot.add_contact("ada@example.com")
    before = implicit.webhook(portal_item(contact, 555, 1))
    assert before.status_code == 403, before.json  # nobody has installed the app yet
    assert implicit.queued() == 0

    assert implicit.install("555").status_code == 200
    calls = len(implicit.hubspot.portals_called)
    accepted = implicit.webhook(portal_item(contact, 555, 2))
    assert accepted.status_code == 202, accepted.json
    assert accepted.json["accepted"] == 1
    implicit.wait_for(lambda: implicit.written(contact))
    assert set(oauth_calls(implicit, calls)) == {"555"}  # the write carried 555's OAuth token

    stranger = implicit.hubspot.add_contact("eve@example.com")
    refused = implicit.webhook(portal_item(stranger, 777, 3))
    assert refused.status_code == 403, refused.json
    assert implicit.queued() == 0
    mixed = implicit.webhook(portal_item(stranger, 777, 4), portal_item(contact, 555, 5))
    assert mixed.status_code == 202 and mixed.json["accepted"] == 1
    assert "portal 777 has not installed the app" in mixed.json["reasons"][0]
    time.sleep(0.3)  # time enough for a stray write to land
    assert not implicit.written(stranger)


def test_a_webhook_signed_with_another_secret_is_not_the_apps(implicit: Connector) -> None:
    implicit.install("555")
    contact = implicit.hubspot.add_contact("ada@example.com")
    forged = implicit.webhook(portal_item(contact, 555, 1), secret="someone-elses-secret")
    assert forged.status_code == 401
    assert implicit.queued() == 0


CONFIG = """
    [hubspot_app]
    client_secret = {{ env = "APP_SECRET" }}

    [[accounts]]
    name = "shop-555"
    platform = "hubspot"
    app = "public"
    account_id = "555"
    access_token = {{ store = "oauth" }}

    [[accounts]]
    name = "shop-556"
    platform = "hubspot"
    app = "public"
    account_id = "556"
    access_token = {{ store = "oauth" }}

    [[accounts]]
    name = "own-app"
    platform = "hubspot"
    account_id = "900"
    access_token = {{ env = "PRIVATE_TOKEN" }}
    client_secret = {{ env = "PRIVATE_SECRET" }}
    api_url = "{url}"
"""


def agency_env(tmp_path: Path, hubspot: FakeHubSpotApi) -> dict[str, str]:
    """Two public-app installs and a private app in `dcb.toml`; the environment has the
    app's client id and the key for its tokens, and no account of its own."""
    config = tmp_path / "dcb.toml"
    config.write_text(textwrap.dedent(CONFIG.format(url=hubspot.base_url)), encoding="utf-8")
    return {
        "DCB_CONFIG": str(config),
        "DCB_DATA_DIR": str(tmp_path / "data"),
        "DCB_PUBLIC_URL": PUBLIC_URL,
        "DCB_HUBSPOT_API_URL": hubspot.base_url,
        "DCB_HUBSPOT_CLIENT_ID": CLIENT_ID,
        "DCB_SECRET_KEY": KEY,
        "DCB_FLUSH_MS": "0",
        "APP_SECRET": CLIENT_SECRET,
        "PRIVATE_TOKEN": PRIVATE_TOKEN,
        "PRIVATE_SECRET": PRIVATE_SECRET,
    }


@pytest.fixture
def agency(tmp_path: Path) -> Iterator[tuple[Connector, dict[str, str]]]:
    clock = MovableClock()
    with FakeHubSpotApi(PRIVATE_TOKEN, clock=clock) as hubspot:
        env = agency_env(tmp_path, hubspot)
        accounts = load_accounts(env)
        with started(accounts.settings, hubspot, clock, accounts) as connector:
            yield connector, env


def test_each_public_account_writes_with_its_own_portals_token(
    agency: tuple[Connector, dict[str, str]],
) -> None:
    connector, _ = agency
    hubspot = connector.hubspot
    assert connector.install("555").status_code == 200
    ada = hubspot.add_contact("ada@example.com")
    calls = len(hubspot.portals_called)
    taken = connector.webhook(portal_item(ada, 555, 1))
    assert taken.status_code == 202, taken.json
    connector.wait_for(lambda: connector.written(ada))
    assert set(oauth_calls(connector, calls)) == {"555"}
    store = connector.store()
    assert store.resolve_profile("shop-555", {"hubspot_id": ada}) is not None
    assert store.resolve_profile("default", {"hubspot_id": ada}) is None

    bob = hubspot.add_contact("bob@example.com")
    refused = connector.webhook(portal_item(bob, 556, 2))  # configured, not installed
    assert refused.status_code == 403, refused.json
    assert connector.queued() == 0

    assert connector.install("556").status_code == 200
    calls = len(hubspot.portals_called)
    taken = connector.webhook(portal_item(bob, 556, 3))
    assert taken.status_code == 202, taken.json
    connector.wait_for(lambda: connector.written(bob))
    assert set(oauth_calls(connector, calls)) == {"556"}
    assert store.resolve_profile("shop-556", {"hubspot_id": bob}) is not None

    # The private app's account: its own secret, its own token, its own portal only.
    cleo = hubspot.add_contact("cleo@example.com")
    calls = len(hubspot.portals_called)
    own = connector.webhook(portal_item(cleo, 900, 4), secret=PRIVATE_SECRET)
    assert own.status_code == 202, own.json
    connector.wait_for(lambda: connector.written(cleo))
    assert oauth_calls(connector, calls) == []  # not one OAuth call: its private token
    assert connector.webhook(portal_item(cleo, 555, 5), secret=PRIVATE_SECRET).status_code == 403
    # The app's secret cannot reach the private app's portal.
    assert connector.webhook(portal_item(cleo, 900, 6)).status_code == 403


def test_a_portal_installed_but_not_configured_is_refused(
    agency: tuple[Connector, dict[str, str]],
) -> None:
    connector, _ = agency
    assert connector.install("777").status_code == 200
    someone = connector.hubspot.add_contact("someone@example.com")
    assert connector.webhook(portal_item(someone, 777, 1)).status_code == 403
    assert connector.queued() == 0


def test_accounts_commands_for_store_backed_accounts(
    agency: tuple[Connector, dict[str, str]],
) -> None:
    connector, env = agency
    connector.install("555")
    out, err = io.StringIO(), io.StringIO()
    assert cli.list_accounts(env, out, err) == 0, err.getvalue()
    text = out.getvalue()
    assert "shop-555: hubspot 555" in text and "hubspot from token store (oauth)" in text

    out = io.StringIO()
    assert cli.test_account("shop-555", env, Runtime(), out, err) == 0, out.getvalue()
    assert out.getvalue().startswith("shop-555/hubspot: ok, the credentials work")
    out = io.StringIO()
    assert cli.test_account("shop-556", env, Runtime(), out, err) == 1
    assert "shop-556/hubspot: FAILED" in out.getvalue()
    assert "install" in out.getvalue()

    out = io.StringIO()
    assert cli.remove_account("shop-555", env, out, err) == 0, err.getvalue()
    assert out.getvalue().rstrip().endswith("its tokens")
    assert connector.grants().installed_portals() == frozenset()
    ada = connector.hubspot.add_contact("ada@example.com")
    assert connector.webhook(portal_item(ada, 555, 1)).status_code == 403


def test_removing_an_install_that_left_the_config(
    agency: tuple[Connector, dict[str, str]],
) -> None:
    connector, env = agency
    connector.install("556")
    config = Path(env["DCB_CONFIG"])
    text = config.read_text("utf-8")
    start = text.index("[[accounts]]\nname = \"shop-556\"")
    config.write_text(text[:start] + text[text.index("[[accounts]]", start + 1):], "utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert cli.remove_account("shop-556", env, out, err) == 0, err.getvalue()
    assert "its tokens" not in out.getvalue()  # the file no longer says which portal
    assert "(hubspot-556): `dcb accounts remove hubspot-<portalId>`" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert cli.remove_account("hubspot-556", env, out, err) == 0, err.getvalue()
    assert out.getvalue().rstrip().endswith("its tokens")
    assert connector.grants().installed_portals() == frozenset()


def test_status_names_each_installs_account(agency: tuple[Connector, dict[str, str]]) -> None:
    connector, env = agency
    connector.install("555")
    connector.install("777")
    out, err = io.StringIO(), io.StringIO()
    assert show_status(env, out, err) == 0, err.getvalue()
    text = out.getvalue()
    assert "oauth hubspot-555 (HubSpot portal 555, account shop-555): connected" in text
    assert "oauth hubspot-777 (HubSpot portal 777, no account: its webhooks are refused)" in text
    out = io.StringIO()
    assert show_status(env, out, err, as_json=True) == 0
    assert json.loads(out.getvalue())["oauth"]["hubspot-555"]["account"] == "shop-555"


def test_status_names_the_implicit_accounts_install(implicit: Connector) -> None:
    implicit.install("555")
    env = oauth_env(implicit.data, implicit.hubspot)
    out, err = io.StringIO(), io.StringIO()
    assert show_status(env, out, err) == 0, err.getvalue()
    assert "oauth hubspot-555 (HubSpot portal 555, account default): connected" in out.getvalue()
