"""dcb.toml: accounts, credential references, env override semantics, file:line errors."""

from __future__ import annotations

import io
import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from connector.accounts import ConfigError, load_accounts
from connector.cli.accounts import list_accounts
from connector.settings import Secret

BASE_ENV = {"DCB_PUBLIC_URL": "https://hooks.example"}
#: The public HubSpot app's client id and a key for its tokens.
APP_ENV = {"DCB_HUBSPOT_CLIENT_ID": "app-id",
           "DCB_SECRET_KEY": "x2y8OTk0LvmGxW1nn1XcB4eUqoKDh9MBjlcO06oZXlk="}  # fmt: skip


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dcb.toml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, **env: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_accounts({**BASE_ENV, "DCB_CONFIG": str(path), **env})
    assert str(raised.value).startswith(f"invalid {path}:")
    return [p.removeprefix(f"{path}:") for p in raised.value.problems]


TWO_SHOPS = """
    [[accounts]]
    name = "shop-one"
    platform = "hubspot"
    account_id = 4410001
    access_token = { env = "SHOP1_TOKEN" }
    client_secret = { env = "SHOP1_SECRET" }
    rate = 190

    [[accounts]]
    name = "shop-two"
    platform = "klaviyo"
    account_id = "KlAv1"
    api_key = { env = "SHOP2_KEY" }
    flow_token = { env = "SHOP2_FLOW" }
    abandon_after = "45m"
"""
SHOP_ENV = {"SHOP1_TOKEN": "pat-1", "SHOP1_SECRET": "s1", "SHOP2_KEY": "pk_2",
            "SHOP2_FLOW": "f2a, f2b"}  # fmt: skip


def test_accounts_come_from_the_file_with_their_own_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_SHOPS)
    accounts = load_accounts({**BASE_ENV, "DCB_CONFIG": str(path), **SHOP_ENV})
    assert accounts.names == ("shop-one", "shop-two")
    one, two = accounts
    assert one.platforms == ("hubspot",) and two.platforms == ("klaviyo",)
    assert one.settings.hubspot_access_token == Secret("pat-1")
    assert one.settings.hubspot_portal_id == "4410001" and one.settings.hubspot_rate == 190
    assert two.settings.klaviyo_flow_tokens == (Secret("f2a"), Secret("f2b"))  # rotation
    assert two.account_id("klaviyo") == "KlAv1"
    assert one.origin == f"{path}:1" and two.origin == f"{path}:9"


def test_a_setting_in_an_entry_overrides_the_environment(tmp_path: Path) -> None:
    rules = tmp_path / "rules" / "two.yaml"
    rules.parent.mkdir()
    rules.write_text("x", encoding="utf-8")
    path = write(tmp_path, TWO_SHOPS + '    rules = "rules/two.yaml"\n')
    env = {**BASE_ENV, **SHOP_ENV, "DCB_CONFIG": str(path), "DCB_ABANDON_AFTER": "10m",
           "DCB_HUBSPOT_RATE": "150", "DCB_FLUSH_MS": "20"}  # fmt: skip
    one, two = load_accounts(env)
    assert one.settings.abandon_after == timedelta(minutes=10)  # the environment's
    assert two.settings.abandon_after == timedelta(minutes=45)  # its own
    assert one.settings.hubspot_rate == 190  # its own over DCB_HUBSPOT_RATE
    assert two.settings.rules == rules  # relative to the file
    assert one.settings.rules is None and one.settings.flush_ms == 20


def test_credentials_are_never_inherited_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_SHOPS)
    env = {**BASE_ENV, **SHOP_ENV, "DCB_CONFIG": str(path), "DCB_KLAVIYO_API_KEY": "pk_env",
           "DCB_EVENTS_API_KEY": "ev", "DCB_KLAVIYO_FLOW_TOKEN": "env-flow"}  # fmt: skip
    accounts = load_accounts(env)
    assert accounts.names == ("default", "shop-one", "shop-two")  # the implicit one stays
    default, one, two = accounts
    assert default.settings.klaviyo_api_key == Secret("pk_env")
    assert one.settings.klaviyo_api_key is None and one.settings.events_api_keys == ()
    assert two.settings.klaviyo_api_key == Secret("pk_2")
    assert two.settings.klaviyo_flow_tokens == (Secret("f2a"), Secret("f2b"))


def test_an_entry_named_default_refines_the_environment_account(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [[accounts]]
        name = "default"
        platform = "hubspot"
        rate = 190
        abandon_after = "2h"
    """)  # fmt: skip
    env = {**BASE_ENV, "DCB_CONFIG": str(path), "DCB_HUBSPOT_ACCESS_TOKEN": "pat-env",
           "DCB_HUBSPOT_RATE": "120", "DCB_KLAVIYO_API_KEY": "pk"}  # fmt: skip
    [default] = load_accounts(env)
    assert default.settings.hubspot_access_token == Secret("pat-env")
    assert default.settings.hubspot_rate == 190
    assert default.settings.abandon_after == timedelta(hours=2)
    assert default.platforms == ("hubspot", "klaviyo")


def test_every_problem_is_listed_with_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        # accounts of the agency
        [[accounts]]
        name = "shop-one"
        platform = "hubspot"
        access_token = "pat-na1-0000"
        client_secret = { env = "NOT_SET" }
        rate = 0
        abandon_after = "soon"

        [[accounts]]
        name = "Shop Two"
        platform = "klaviyo"
        api_key = { store = "vault" }
        acess_token = { env = "X" }

        [[accounts]]
        name = "shop-three"
        platform = "mailchimp"
    """)  # fmt: skip
    assert found == [
        "5: account 'shop-one': access_token: a secret is never written in this file; write "
        'access_token = { env = "VARIABLE" } or { store = "oauth" }',
        "6: account 'shop-one': client_secret: environment variable NOT_SET is not set",
        "7: account 'shop-one': rate must be a whole number between 1 and 10000, got 0",
        "8: account 'shop-one': abandon_after: expected a duration like 30m, 2h or 7d, got 'soon'",
        "11: account 'Shop Two': name must be 1-40 lower case letters, digits, - or _ (starting "
        "with a letter or digit), got 'Shop Two'",
        "13: account 'Shop Two': api_key: store must be one of oauth, got 'vault'",
        "14: account 'Shop Two': unknown key 'acess_token' for a klaviyo account (name, platform, "
        "account_id, rules, abandon_after, events_api_key, publishable_key, allowed_origins, "
        "shop_domains, identity_secret, api_key, flow_token, webhook_secret, app, api_url)",
        "18: account 'shop-three': platform must be hubspot or klaviyo, got 'mailchimp'",
    ]


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        [[accounts]]
        name = "shop-one"
        platform = hubspot
    """)  # fmt: skip
    assert found == ["3: not valid TOML: Invalid value"]


def test_accounts_may_not_share_a_deciding_secret_or_a_platform_account(tmp_path: Path) -> None:
    found = problems(tmp_path, TWO_SHOPS + """
        [[accounts]]
        name = "shop-three"
        platform = "klaviyo"
        account_id = "KlAv1"
        api_key = { env = "SHOP3_KEY" }
        flow_token = { env = "SHOP2_FLOW" }
        """, SHOP3_KEY="pk_3", **SHOP_ENV)  # fmt: skip
    assert found == [
        "17: accounts 'shop-two' and 'shop-three' are both klaviyo account KlAv1",
        "17: the same Klaviyo flow token serves 'shop-two' and 'shop-three': each account "
        "needs its own (the secret decides which account a request is for)",
    ]


def test_a_public_app_install_needs_the_app_secret_and_its_portal(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        [[accounts]]
        name = "pub"
        platform = "hubspot"
        app = "public"
        access_token = { store = "oauth" }
    """)  # fmt: skip
    assert found == [
        "4: account 'pub': a public app install needs account_id (the portal id)",
        "4: account 'pub': app = \"public\" needs [hubspot_app] client_secret in this file",
    ]
    path = write(tmp_path, """
        [hubspot_app]
        client_secret = { env = "APP_SECRET" }

        [[accounts]]
        name = "pub"
        platform = "hubspot"
        app = "public"
        account_id = "77"
        access_token = { store = "oauth" }
    """)  # fmt: skip
    env = {**BASE_ENV, "DCB_CONFIG": str(path), "APP_SECRET": "app"}
    assert problems(tmp_path, path.read_text("utf-8"), APP_SECRET="app") == [
        "4: account 'pub': app = \"public\" needs DCB_HUBSPOT_CLIENT_ID (the public app's "
        "client id) in the environment",
        "4: account 'pub': app = \"public\" needs DCB_SECRET_KEY: installed portals' tokens "
        "are stored encrypted with it",
    ]
    accounts = load_accounts({**env, **APP_ENV})
    [pub] = accounts
    assert accounts.hubspot_app_secrets == (Secret("app"),)
    assert (pub.platforms, pub.token_store, pub.hubspot_app) == (("hubspot",), "oauth", "public")
    assert pub.access_token("hubspot", None) is None


def test_the_public_app_has_one_client_secret(tmp_path: Path) -> None:
    app = """
        [hubspot_app]
        client_secret = { env = "APP_SECRET" }
    """
    # The app's secret is the file's: the environment needs only its id (and a key).
    accounts = load_accounts({**BASE_ENV, **APP_ENV, "DCB_CONFIG": str(write(tmp_path, app)),
                              "APP_SECRET": "app"})  # fmt: skip
    assert accounts.oauth_app_secrets == (Secret("app"),)
    # Not both: the environment in OAuth mode would make the implicit account an install too.
    assert problems(tmp_path, app, APP_SECRET="app", DCB_HUBSPOT_CLIENT_SECRET="env-app",
                    **APP_ENV) == [  # fmt: skip
        "2: [hubspot_app] client_secret and DCB_HUBSPOT_CLIENT_SECRET both name the public "
        'app\'s: keep one (with [hubspot_app], each installed portal is an app = "public" account)'
    ]
    assert problems(tmp_path, "", **APP_ENV) == [
        " DCB_HUBSPOT_CLIENT_ID needs the app's client secret: [hubspot_app] client_secret here, "
        "or DCB_HUBSPOT_CLIENT_SECRET"
    ]
    # A private app's secret verifies its webhooks, and never stands in for the app's.
    private = load_accounts({**BASE_ENV, **APP_ENV, "DCB_HUBSPOT_ACCESS_TOKEN": "pat-1",
                             "DCB_HUBSPOT_CLIENT_SECRET": "private"})  # fmt: skip
    assert private.oauth_app_secrets == ()
    oauth = load_accounts({**BASE_ENV, **APP_ENV, "DCB_HUBSPOT_CLIENT_SECRET": "env-app"})
    assert oauth.oauth_app_secrets == (Secret("env-app"),)


def test_a_missing_config_file_is_a_settings_error() -> None:
    with pytest.raises(Exception, match="DCB_CONFIG: /nowhere/dcb.toml does not exist"):
        load_accounts({"DCB_CONFIG": "/nowhere/dcb.toml"})


def test_list_works_without_a_config(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert list_accounts({}, out, err) == 0
    assert out.getvalue().startswith("no accounts:")
    out = io.StringIO()
    assert list_accounts({"DCB_KLAVIYO_API_KEY": "pk_secret"}, out, err, as_json=True) == 0
    [row] = json.loads(out.getvalue())
    assert (row["name"], row["platforms"], row["defined_in"]) == ("default", ["klaviyo"],
                                                                 "environment")  # fmt: skip
    assert "pk_secret" not in out.getvalue()


def test_list_shows_where_each_account_comes_from(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_SHOPS)
    out, err = io.StringIO(), io.StringIO()
    assert list_accounts({**BASE_ENV, **SHOP_ENV, "DCB_CONFIG": str(path)}, out, err) == 0
    text = out.getvalue()
    assert "shop-one: hubspot 4410001" in text and f"defined in: {path}:9" in text
    assert "requests verified by: Klaviyo flow token" in text
    assert "abandon after 45m" in text
    assert all(secret not in text for secret in ("pat-1", "s1", "pk_2", "f2a"))


def test_accounts_test_gives_a_verdict_per_platform(tmp_path: Path) -> None:
    from connector.cli.accounts import test_account
    from connector.runtime import Runtime
    from tests.fakes.fake_hubspot import FakeHubSpotApi

    with FakeHubSpotApi("pat-good") as hubspot:
        path = write(tmp_path, f"""
            [[accounts]]
            name = "good"
            platform = "hubspot"
            access_token = {{ env = "GOOD" }}
            api_url = "{hubspot.base_url}"

            [[accounts]]
            name = "bad"
            platform = "hubspot"
            access_token = {{ env = "BAD" }}
            api_url = "{hubspot.base_url}"
        """)  # fmt: skip
        env = {"DCB_CONFIG": str(path), "GOOD": "pat-good", "BAD": "pat-wrong"}
        out, err = io.StringIO(), io.StringIO()
        assert test_account("good", env, Runtime(), out, err) == 0
        assert out.getvalue().startswith("good/hubspot: ok, the credentials work (created")
        out = io.StringIO()
        assert test_account("bad", env, Runtime(), out, err) == 1
        assert out.getvalue().startswith("bad/hubspot: FAILED: group dcb: 401")
        assert "pat-wrong" not in out.getvalue()
        assert test_account("nobody", env, Runtime(), out, err) == 1
        assert "no account 'nobody' (known: good, bad)" in err.getvalue()
