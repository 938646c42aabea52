"""The site snippet's edge: dcb.js, CORS, the publishable key, rate limits, identity.

The real app from `build_service` (web only, so events stay queued to be inspected), with
an injected clock; on the embedded store, and on Redis where limits must be shared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from connector.bootstrap import build_service
from connector.core.storage import Claimed
from connector.runtime import Runtime
from connector.service import Service
from connector.settings import Settings
from tests.fakes.clock import FakeClock
from webhooks.identity import sign_identity

SHOP = "https://shop.example"
KEY = "pk_test_site"
OLD_KEY = "pk_test_old"
SERVER_KEY = "sk_server_events"
IDENTITY_SECRET = "identity-secret"
BROWSER = "b-3f0c9a2e41d8"
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class Site:
    def __init__(self, service: Service, clock: FakeClock) -> None:
        self.service = service
        self.client: FlaskClient = service.app.test_client()
        self.clock = clock

    def post(
        self,
        event: dict[str, Any] | None = None,
        *,
        origin: str | None = SHOP,
        key: str | None = KEY,
        address: str = "203.0.113.7",
        **headers: str,
    ) -> Any:
        sent = {"type": "cart_updated", "browser_id": BROWSER, **(event or {})}
        if origin is not None:
            headers["Origin"] = origin
        if key is not None:
            headers["X-DCB-Key"] = key
        return self.client.post(
            "/v1/events",
            data=json.dumps(sent),
            headers={"Content-Type": "application/json", **headers},
            environ_base={"REMOTE_ADDR": address},
        )

    def queued(self) -> list[Claimed]:
        store = self.service.app.extensions["dcb"]["store"]
        return list(store.claim("test", 100, self.clock()))


def start(data: Path, **env: str) -> Site:
    clock = FakeClock()
    settings = Settings.from_env(
        {
            "DCB_DATA_DIR": str(data),
            "DCB_HUBSPOT_ACCESS_TOKEN": "pat-test",
            "DCB_KLAVIYO_API_KEY": "pk_klaviyo_private",
            "DCB_EVENTS_API_KEY": SERVER_KEY,
            "DCB_PUBLISHABLE_KEY": f"{KEY},{OLD_KEY}",
            "DCB_ALLOWED_ORIGINS": f"{SHOP},http://127.0.0.1:8000",
            "DCB_IDENTITY_SECRET": IDENTITY_SECRET,
            "DCB_PULL_API_KEYS": "pull-key",  # the pull endpoint is on, and refuses KEY
            "DCB_URL_SIGNING_KEY": "url-signing-key",
            **env,
        }
    )
    runtime = Runtime(clock=lambda: NOW, epoch=clock)
    return Site(build_service(settings, runtime, workers=0), clock)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = start(tmp_path)
    yield running
    running.service.app.extensions["dcb"]["store"].close()


# --- dcb.js --------------------------------------------------------------------------------


def test_the_script_is_public_cacheable_and_revalidates_with_its_etag(site: Site) -> None:
    script = site.client.get("/v1/dcb.js")
    assert script.status_code == 200
    assert script.content_type.startswith("application/javascript")
    assert script.headers["Cache-Control"] == "public, max-age=300"
    assert b"X-DCB-Key" in script.data and b"keepalive" in script.data
    etag = script.headers["ETag"]
    again = site.client.get("/v1/dcb.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""


def test_the_script_says_why_when_the_snippet_is_off(tmp_path: Path) -> None:
    off = start(tmp_path, DCB_PUBLISHABLE_KEY="", DCB_ALLOWED_ORIGINS="")
    answer = off.client.get("/v1/dcb.js")
    assert answer.status_code == 404 and "DCB_PUBLISHABLE_KEY" in answer.json["error"]
    assert off.post().status_code == 404


# --- CORS ------------------------------------------------------------------------------------


def preflight(site: Site, origin: str) -> Any:
    return site.client.options(
        "/v1/events",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-dcb-key",
        },
    )


@pytest.mark.parametrize("origin", [SHOP, "http://127.0.0.1:8000"])
def test_a_preflight_from_an_allowed_origin_is_answered(site: Site, origin: str) -> None:
    answer = preflight(site, origin)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert answer.headers["Access-Control-Allow-Methods"] == "POST"
    assert answer.headers["Access-Control-Allow-Headers"] == "Content-Type, X-DCB-Key"
    assert answer.headers["Vary"] == "Origin"


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://shop.example", "https://shop.example:8443",
     "https://sub.shop.example", "null", ""],
)  # fmt: skip
def test_other_origins_get_403_and_no_cors_headers(site: Site, origin: str) -> None:
    for answer in (preflight(site, origin), site.post(origin=origin)):
        assert answer.status_code == 403
        assert "Access-Control-Allow-Origin" not in answer.headers
    assert site.queued() == []


def test_answers_to_an_allowed_origin_carry_cors_headers_even_when_refused(site: Site) -> None:
    answer = site.post({"type": "order_placed"})
    assert answer.status_code == 400
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP


# --- the publishable key ---------------------------------------------------------------------


def test_a_browser_event_with_the_key_is_queued(site: Site) -> None:
    answer = site.post({"properties": {"cart_value": 59, "currency": "EUR"}})
    assert answer.status_code == 202, answer.json
    assert answer.json["accepted"] == 1 and answer.json["identified"] is False
    (item,) = site.queued()
    assert item.event["source"] == "browser"
    assert item.event["profile"] == {"browser_id": BROWSER}
    assert item.event["properties"] == {"cart_value": 59.0, "currency": "EUR"}


def test_every_listed_key_works_for_a_rotation(site: Site) -> None:
    assert site.post(key=OLD_KEY).status_code == 202


@pytest.mark.parametrize("key", ["", "pk_test_other", SERVER_KEY])
def test_an_unknown_key_is_refused(site: Site, key: str) -> None:
    answer = site.post(key=key)
    assert answer.status_code == 401 and answer.json["error"] == "unknown publishable key"
    assert site.queued() == []


def test_the_publishable_key_cannot_read_or_do_anything_else(site: Site) -> None:
    """On every route, in every place a key could go, the publishable key gets what no key
    gets: public routes answer as they do to anyone, the rest refuse."""
    rules = [r for r in site.service.app.url_map.iter_rules() if r.endpoint != "static"]
    assert len(rules) >= 8
    for rule in rules:
        path = rule.rule.replace("<", "").replace(">", "")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for credentials in (
                {"headers": {"Authorization": f"Bearer {KEY}"}},
                {"headers": {"X-DCB-Token": KEY, "X-API-Key": KEY}},
                {"query_string": {"key": KEY, "api_key": KEY, "token": KEY}},
            ):
                with_key = site.client.open(path, method=method, data=b"{}", **credentials)
                without = site.client.open(path, method=method, data=b"{}")
                if with_key.status_code < 300:  # a public route: the key changes nothing
                    assert with_key.status_code == without.status_code, path
                    assert rule.rule in {"/healthz", "/readyz", "/metrics", "/v1/dcb.js"}, path
                else:
                    assert with_key.status_code in (400, 401, 403, 404, 405), (path, method)
    assert site.queued() == []


def test_a_server_key_is_not_a_browser_key_nor_the_other_way(site: Site) -> None:
    server = {
        "type": "order_placed",
        "profile": {"email": "ada@example.com"},
        "properties": {"order_id": "o-1", "value": 10},
    }
    as_browser = site.client.post(
        "/v1/events", json=server, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert as_browser.status_code == 401
    as_server = site.client.post(
        "/v1/events", json=server, headers={"Authorization": f"Bearer {SERVER_KEY}"}
    )
    assert as_server.status_code == 202  # the shop's server path is untouched
    assert [c.event["type"] for c in site.queued()] == ["order_placed"]


# --- what the browser says -------------------------------------------------------------------


def test_the_server_stamps_the_time(site: Site) -> None:
    assert site.post({"occurred_at": "2020-01-01T00:00:00Z"}).status_code == 202
    (item,) = site.queued()
    assert item.event["occurred_at"] == "2026-11-28T10:00:00Z"


def test_a_valid_identity_token_names_the_shopper(site: Site) -> None:
    token = sign_identity(IDENTITY_SECRET, "email", "Ada@Example.com")
    answer = site.post({"identity": token})
    assert answer.status_code == 202 and answer.json["identified"] is True
    (item,) = site.queued()
    assert item.event["profile"] == {"email": "ada@example.com"}


@pytest.mark.parametrize(
    "token",
    [
        sign_identity("another-shops-secret", "email", "ada@example.com"),
        sign_identity(IDENTITY_SECRET, "email", "ada@example.com")[:-1] + "x",
        "ZW1haWw6dmljdGltQGV4YW1wbGUuY29t.forged",
    ],
    ids=["other-secret", "tampered", "forged"],
)
def test_an_invalid_identity_token_is_refused_not_downgraded(site: Site, token: str) -> None:
    answer = site.post({"identity": token})
    assert answer.status_code == 401
    assert "identity token" in answer.json["error"]
    assert site.queued() == []


def test_urls_off_the_shops_domains_are_refused_with_the_reason(site: Site) -> None:
    answer = site.post({"properties": {"checkout_url": "https://evil.example/pay"}})
    assert answer.status_code == 400
    assert answer.json["error"] == (
        "properties.checkout_url: evil.example is not one of the shop's domains"
    )
    ok = site.post({"properties": {"checkout_url": "https://shop.example/cart"}})
    assert ok.status_code == 202


def test_shop_domains_can_be_named_apart_from_the_origins(tmp_path: Path) -> None:
    site = start(tmp_path, DCB_SHOP_DOMAINS="shop.example,cdn-shop.example")
    image = site.post({"properties": {"image_url": "https://img.cdn-shop.example/j.jpg"}})
    assert image.status_code == 202
    local = site.post({"properties": {"url": "http://127.0.0.1:8000/p/1"}})
    assert local.status_code == 400


def test_an_oversized_body_is_413(site: Site) -> None:
    answer = site.post({"properties": {"name": "x" * 70_000}})
    assert answer.status_code == 413


# --- rate limits ----------------------------------------------------------------------------


def limited(tmp_path: Path, **env: str) -> Site:
    limits = {
        "DCB_BROWSER_RATE_PER_KEY": "100",
        "DCB_BROWSER_RATE_PER_ADDRESS": "100",
        "DCB_BROWSER_RATE_PER_BROWSER": "100",
    }
    return start(tmp_path, **{**limits, **env})


def assert_limited(answer: Any) -> None:
    assert answer.status_code == 429, answer.json
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP


def test_each_browser_is_limited(tmp_path: Path) -> None:
    site = limited(tmp_path, DCB_BROWSER_RATE_PER_BROWSER="3")
    for n in range(3):
        assert site.post({"event_id": f"e-{n}"}).status_code == 202
    assert_limited(site.post({"event_id": "e-3"}))
    assert site.post({"browser_id": "b-another-one"}).status_code == 202
    site.clock.advance(60)
    assert site.post({"event_id": "e-4"}).status_code == 202


def test_each_address_is_limited(tmp_path: Path) -> None:
    site = limited(tmp_path, DCB_BROWSER_RATE_PER_ADDRESS="2")
    assert site.post({"browser_id": "b-11111111"}).status_code == 202
    assert site.post({"browser_id": "b-22222222"}).status_code == 202
    assert_limited(site.post({"browser_id": "b-33333333"}))
    assert site.post({"browser_id": "b-33333333"}, address="198.51.100.1").status_code == 202


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(tmp_path: Path) -> None:
    site = limited(tmp_path, DCB_BROWSER_RATE_PER_ADDRESS="1", DCB_BEHIND_PROXY="true")
    forwarded = {"X-Forwarded-For": "1.1.1.1, 203.0.113.9"}
    assert site.post({"browser_id": "b-11111111"}, **forwarded).status_code == 202
    spoofed = {"X-Forwarded-For": "9.9.9.9, 203.0.113.9"}  # the client forged the first hop
    assert_limited(site.post({"browser_id": "b-22222222"}, **spoofed))
    other = {"X-Forwarded-For": "203.0.113.10"}
    assert site.post({"browser_id": "b-33333333"}, **other).status_code == 202


def test_the_key_is_limited_across_browsers_and_addresses(tmp_path: Path) -> None:
    site = limited(tmp_path, DCB_BROWSER_RATE_PER_KEY="2")
    assert site.post({"browser_id": "b-11111111"}, address="10.0.0.1").status_code == 202
    assert site.post({"browser_id": "b-22222222"}, address="10.0.0.2").status_code == 202
    assert_limited(site.post({"browser_id": "b-33333333"}, address="10.0.0.3"))
    assert site.post({"browser_id": "b-33333333"}, key=OLD_KEY).status_code == 202


def test_limits_are_shared_by_every_process_on_redis(
    tmp_path: Path, redis_url: str, redis_client: Any
) -> None:
    env = {"DCB_REDIS_URL": redis_url, "DCB_BROWSER_RATE_PER_BROWSER": "2"}
    first, second = limited(tmp_path / "a", **env), limited(tmp_path / "b", **env)
    second.clock.now = first.clock.now
    assert first.post({"event_id": "e-1"}).status_code == 202
    assert second.post({"event_id": "e-2"}).status_code == 202
    assert_limited(first.post({"event_id": "e-3"}))
    assert_limited(second.post({"event_id": "e-4"}))
