from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from connector.settings import DEFAULT_HUBSPOT_API_URL, Settings, SettingsError


def test_defaults_on_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path(".dcb")
    assert settings.platforms == ()
    assert settings.hubspot_api_url == DEFAULT_HUBSPOT_API_URL
    assert (settings.flush_ms, settings.queue_limit, settings.hubspot_rate) == (50, 100_000, 100)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "DCB_FLUSH_MS": "abc",
                "DCB_HUBSPOT_RATE": "0",
                "DCB_RULES": "/no/such.yaml",
                "DCB_HUBSPOT_CLIENT_SECRET": "s",
                "DCB_KLAVIYO_API_URL": "ftp://x",
                "DCB_HUBSPOT_PROPERTY_EVENTS": "cart_value=carted",
                "DCB_REDIS_URL": "http://x",
            }
        )
    text = str(info.value)
    for expected in (
        "DCB_FLUSH_MS must be a whole number",
        "DCB_HUBSPOT_RATE must be between",
        "DCB_RULES: /no/such.yaml does not exist",
        "DCB_PUBLIC_URL is required",
        "DCB_KLAVIYO_API_URL must be an http(s) URL",
        "unknown event type",
        "DCB_REDIS_URL must be",
    ):
        assert expected in text
    assert len(info.value.problems) == 7


def test_secrets_never_show() -> None:
    settings = Settings.from_env(
        {"DCB_HUBSPOT_ACCESS_TOKEN": "pat-very-secret", "DCB_EVENTS_API_KEY": "k1, k2"}
    )
    assert "pat-very-secret" not in repr(settings)
    assert [k.value for k in settings.events_api_keys] == ["k1", "k2"]
    assert settings.platforms == ("hubspot",)


def test_property_events_mapping() -> None:
    settings = Settings.from_env({"DCB_HUBSPOT_PROPERTY_EVENTS": "cart_total=cart_updated"})
    assert settings.hubspot_property_events == {"cart_total": "cart_updated"}


def test_the_site_snippet_settings() -> None:
    settings = Settings.from_env(
        {
            "DCB_PUBLISHABLE_KEY": "pk_new, pk_old",
            "DCB_ALLOWED_ORIGINS": "https://Shop.example/, https://www.shop.example:8443",
            "DCB_IDENTITY_SECRET": "s1,s0",
        }
    )
    assert settings.site_enabled
    assert settings.publishable_keys == ("pk_new", "pk_old")
    assert settings.allowed_origins == ("https://shop.example", "https://www.shop.example:8443")
    assert settings.url_domains == ("shop.example", "www.shop.example")
    assert [s.value for s in settings.identity_secrets] == ["s1", "s0"]
    assert "s1" not in repr(settings)
    assert (settings.browser_rate_per_key, settings.browser_rate_per_browser) == (6000, 60)
    named = Settings.from_env({"DCB_SHOP_DOMAINS": "Shop.example,cdn.example"})
    assert named.url_domains == ("shop.example", "cdn.example") and not named.site_enabled


def test_site_snippet_problems_are_listed() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "DCB_PUBLISHABLE_KEY": "shared-key",
                "DCB_EVENTS_API_KEY": "shared-key",
                "DCB_ALLOWED_ORIGINS": "shop.example,https://shop.example/path",
                "DCB_SHOP_DOMAINS": "https://shop.example",
                "DCB_BROWSER_RATE_PER_BROWSER": "0",
            }
        )
    text = str(info.value)
    assert "DCB_ALLOWED_ORIGINS: expected scheme://host[:port], got 'shop.example'" in text
    assert "got 'https://shop.example/path'" in text
    assert "DCB_ALLOWED_ORIGINS is required with DCB_PUBLISHABLE_KEY" in text
    assert "DCB_PUBLISHABLE_KEY must differ from every DCB_EVENTS_API_KEY" in text
    assert "DCB_SHOP_DOMAINS: expected a host name" in text
    assert "DCB_BROWSER_RATE_PER_BROWSER must be between" in text

def test_pull_settings() -> None:
    settings = Settings.from_env(
        {"DCB_PULL_API_KEYS": "p1,p2", "DCB_URL_SIGNING_KEY": "s1", "DCB_PULL_MAX_AGE": "5m"}
    )
    assert [k.value for k in settings.pull_api_keys] == ["p1", "p2"]
    assert settings.pull_enabled and settings.pull_max_age.total_seconds() == 300
    assert "p1" not in repr(settings)
    assert not Settings.from_env({}).pull_enabled


def test_a_pull_key_may_not_be_an_events_key() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {"DCB_PULL_API_KEYS": "k1", "DCB_EVENTS_API_KEY": "k0,k1", "DCB_PULL_CACHE_TTL": "0s"}
        )
    assert "DCB_PULL_API_KEYS must differ from DCB_EVENTS_API_KEY" in str(info.value)
    assert "DCB_PULL_CACHE_TTL must be longer than 0s" in str(info.value)
    assert "k1" not in str(info.value)


def test_the_klaviyo_oauth_app_settings() -> None:
    key = Fernet.generate_key().decode()
    env = {"DCB_KLAVIYO_CLIENT_ID": "kid", "DCB_KLAVIYO_CLIENT_SECRET": "ksecret",
           "DCB_SECRET_KEY": key, "DCB_PUBLIC_URL": "https://hooks.example"}  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.klaviyo_oauth and settings.klaviyo_enabled
    assert settings.platforms == ("klaviyo",)
    assert settings.klaviyo_redirect_uri == "https://hooks.example/oauth/klaviyo/callback"
    assert "ksecret" not in repr(settings)
    assert Settings.from_env({**env, "DCB_KLAVIYO_SCOPES": "profiles:read accounts:read"}
                             ).klaviyo_scopes == ("profiles:read", "accounts:read")  # fmt: skip
    keyed = Settings.from_env({**env, "DCB_KLAVIYO_API_KEY": "pk_x"})
    assert not keyed.klaviyo_oauth  # a private key writes; the app still installs


def test_klaviyo_oauth_app_problems_are_listed() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DCB_KLAVIYO_CLIENT_ID": "kid"})
    assert "DCB_KLAVIYO_CLIENT_ID and DCB_KLAVIYO_CLIENT_SECRET go together" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DCB_KLAVIYO_CLIENT_ID": "kid", "DCB_KLAVIYO_CLIENT_SECRET": "s"})
    assert caught.value.problems == [
        "DCB_SECRET_KEY is required with DCB_KLAVIYO_CLIENT_ID: installed Klaviyo accounts' "
        "tokens are stored encrypted with it",
        "DCB_PUBLIC_URL is required with DCB_KLAVIYO_CLIENT_ID: Klaviyo sends the browser "
        "back to DCB_PUBLIC_URL/oauth/klaviyo/callback",
    ]
