"""`GET /v1/blocks/<platform>/<account>/<profile_id>` on both stores: what it answers, how
it caches, and who may read it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from connector.bootstrap import build_service
from connector.core.intake import ERASE
from connector.core.processing import Processor
from connector.core.storage import Inbound
from connector.settings import Settings
from tests.pull.conftest import (
    BEARER,
    EVENTS_KEY,
    SIGNING_KEY,
    Pulling,
    checkout,
    give_context,
    open_pulling,
    settings,
)
from tests.waiting import wait_for
from webhooks.signed_urls import sign_path


def test_a_profile_with_a_context_gets_its_decision(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    answer = pulling.pull("ada@example.com")
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["decided"], body["block"], body["rule"]) == (
        True,
        "personalized_offer",
        "premium-offer",
    )
    assert "Wool jacket" in body["properties"]["dcb_body"]
    assert body["properties"]["dcb_block"] == "personalized_offer"
    assert answer.headers["X-DCB-Cache"] == "decided"  # decided on the spot
    assert answer.headers["Cache-Control"] == "private, max-age=60"


def test_html_and_text_formats(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    decided = pulling.pull("ada@example.com").get_json()["properties"]
    html = pulling.pull("ada@example.com", query="?format=html")
    assert html.content_type == "text/html; charset=utf-8"
    assert html.get_data(as_text=True) == decided["dcb_html"]
    assert "<table" in decided["dcb_html"]
    text = pulling.pull("ada@example.com", query="?format=text")
    assert text.content_type == "text/plain; charset=utf-8"
    assert text.get_data(as_text=True) == decided["dcb_text"] != ""
    bad = pulling.pull("ada@example.com", query="?format=xml")
    assert bad.status_code == 400 and "unknown format" in bad.get_json()["error"]


def test_the_second_read_is_an_l1_hit_with_the_same_etag_and_304(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    first = pulling.pull("ada@example.com")
    second = pulling.pull("ada@example.com")
    assert second.headers["X-DCB-Cache"] == "l1"
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong
    assert second.headers["ETag"] == etag and second.data == first.data
    again = pulling.pull("ada@example.com", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    other = pulling.pull("ada@example.com", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    html = pulling.pull("ada@example.com", query="?format=html", headers={"If-None-Match": etag})
    assert html.status_code == 200 and html.headers["ETag"] != etag  # each format its own


def test_a_change_busts_only_that_profile(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    give_context(pulling.store, checkout("bob@example.com"))
    ada, bob = pulling.pull("ada@example.com"), pulling.pull("bob@example.com")
    give_context(pulling.store, checkout("ada@example.com", item="Silk scarf"))
    ada2, bob2 = pulling.pull("ada@example.com"), pulling.pull("bob@example.com")
    assert ada2.headers["X-DCB-Cache"] == "decided"
    assert "Silk scarf" in ada2.get_json()["properties"]["dcb_body"]
    assert ada2.headers["ETag"] != ada.headers["ETag"]
    stale = pulling.pull("ada@example.com", headers={"If-None-Match": ada.headers["ETag"]})
    assert stale.status_code == 200  # the old ETag no longer matches
    assert bob2.headers["X-DCB-Cache"] == "l1"
    assert bob2.headers["ETag"] == bob.headers["ETag"]


def test_another_process_view_finds_the_entry_in_l2(
    pulling: Pulling, pull_settings: Settings
) -> None:
    """A second service on the same store (its own, empty L1) reads the shared layer."""
    give_context(pulling.store, checkout("ada@example.com"))
    first = pulling.pull("ada@example.com")
    other = open_pulling(pulling.kind, pull_settings)
    try:
        answer = other.pull("ada@example.com")
        assert answer.headers["X-DCB-Cache"] == "l2"
        assert answer.headers["ETag"] == first.headers["ETag"]
        assert other.pull("ada@example.com").headers["X-DCB-Cache"] == "l1"
        give_context(other.store, checkout("ada@example.com", item="Silk scarf"))
        changed = pulling.pull("ada@example.com")  # the first one's L1 entry is stale now
        assert changed.headers["X-DCB-Cache"] == "decided"
        assert "Silk scarf" in changed.get_json()["properties"]["dcb_body"]
        assert other.pull("ada@example.com").headers["X-DCB-Cache"] == "l2"
    finally:
        other.service.close()


def test_an_unknown_profile_gets_the_fallback_never_an_error(pulling: Pulling) -> None:
    answer = pulling.pull("nobody@example.com", platform="hubspot")
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["decided"], body["block"], body["rule"]) == (False, "we_noticed", None)
    assert body["reason"] == "unknown profile"
    assert answer.headers["X-DCB-Cache"] == "fallback"
    assert pulling.pull("51", platform="hubspot").get_json()["block"] == "we_noticed"


def test_profile_ids_by_platform_id_email_or_kind(pulling: Pulling) -> None:
    event = checkout("ada@example.com")
    event["profile"]["klaviyo_id"] = "01HKLAVIYO"
    event["profile"]["hubspot_id"] = "51"
    give_context(pulling.store, event)
    for platform, profile in [
        ("klaviyo", "01HKLAVIYO"),
        ("klaviyo", "ADA@example.com"),
        ("klaviyo", "external_id:x-ada@example.com"),
        ("hubspot", "51"),
        ("hubspot", "email:ada@example.com"),
    ]:
        body = pulling.pull(profile, platform=platform).get_json()
        assert body["decided"] and body["block"] == "personalized_offer", (platform, profile)
    wrong = pulling.pull("external_id:x-ada@example.com", platform="hubspot")
    assert wrong.status_code == 400 and "does not address profiles by external_id" in wrong.text


def test_unknown_platform_and_account_are_404(pulling: Pulling) -> None:
    assert pulling.pull("ada@example.com", platform="mailchimp").status_code == 404
    answer = pulling.client.get("/v1/blocks/klaviyo/other/ada@example.com", headers=BEARER)
    assert answer.status_code == 404 and "unknown account" in answer.get_json()["error"]


def test_an_erased_profile_is_served_the_fallback_at_once(pulling: Pulling) -> None:
    key = give_context(pulling.store, checkout("ada@example.com"))
    assert pulling.pull("ada@example.com").get_json()["decided"]
    pulling.store.erase("default", key)
    body = pulling.pull("ada@example.com").get_json()
    assert (body["decided"], body["block"]) == (False, "we_noticed")
    assert "Wool jacket" not in json.dumps(body)


def test_erase_requests_through_the_queue_bust_the_cache(pulling: Pulling) -> None:
    """The processor's erase path (a platform's deletion webhook) goes through the store."""
    give_context(pulling.store, checkout("ada@example.com"))
    pulling.pull("ada@example.com")
    pulling.store.enqueue(
        [Inbound("default", "erase-1", {ERASE: {"email": "ada@example.com"}}, ("hubspot",))],
        time.time(),
    )
    lookup = pulling.service.app.extensions["dcb"]["pull"].service
    Processor(pulling.store, lambda _a: lookup.ruleset, lookup.renderer, lookup.clock).run_once()
    assert pulling.pull("ada@example.com").get_json()["decided"] is False


# --- who may read ---------------------------------------------------------------------------


def signed_url(path: str, expires: float, cdn: bool = False) -> str:
    return sign_path(path, key=SIGNING_KEY, expires=int(expires), cdn=cdn)


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {EVENTS_KEY}", "Bearer pk_live_publishable123", "Bearer pull-key-2", "Basic x"],
)
def test_only_pull_keys_and_signed_urls_read(pulling: Pulling, authorization: str | None) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = pulling.client.get("/v1/blocks/klaviyo/default/ada@example.com", headers=headers)
    assert answer.status_code == 401
    assert "Wool" not in answer.text
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_signed_url_reads_privately_until_it_expires(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    url = signed_url("/v1/blocks/klaviyo/default/ada@example.com", time.time() + 60)
    answer = pulling.client.get(url)
    assert answer.status_code == 200 and answer.get_json()["block"] == "personalized_offer"
    assert answer.headers["Cache-Control"] == "private, max-age=60"
    assert "Surrogate-Key" not in answer.headers
    head = pulling.client.head(url)
    assert head.status_code == 200 and head.headers["ETag"] == answer.headers["ETag"]
    expired = signed_url("/v1/blocks/klaviyo/default/ada@example.com", time.time() - 1)
    gone = pulling.client.get(expired)
    assert gone.status_code == 403 and "expired" in gone.get_json()["error"]


def test_a_tampered_signed_url_fails(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    give_context(pulling.store, checkout("bob@example.com"))
    url = signed_url("/v1/blocks/klaviyo/default/ada@example.com", time.time() + 60)
    other_profile = url.replace("ada%40", "bob%40").replace("ada@", "bob@")
    assert other_profile != url
    assert pulling.client.get(other_profile).status_code == 401
    assert pulling.client.get(url + "&cdn=1").status_code == 401
    assert pulling.client.get(url.replace("sig=", "sig=0")).status_code == 401


def test_a_cdn_url_is_public_and_names_the_profile(pulling: Pulling) -> None:
    key = give_context(pulling.store, checkout("ada@example.com"))
    url = signed_url("/v1/blocks/klaviyo/default/ada@example.com", time.time() + 60, cdn=True)
    answer = pulling.client.get(url + "&format=html")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "public, max-age=60"
    assert answer.headers["Surrogate-Key"].split() == ["dcb", "dcb/default", f"dcb/default/{key}"]
    path = urlsplit(url).path
    assert path == "/v1/blocks/klaviyo/default/ada@example.com"


def test_the_endpoint_is_off_without_keys(tmp_path: Path) -> None:
    config = settings(tmp_path / "data", DCB_PULL_API_KEYS="", DCB_URL_SIGNING_KEY="")
    off = open_pulling("embedded", config)
    try:
        answer = off.pull("ada@example.com")
        assert answer.status_code == 404 and "DCB_PULL_API_KEYS" in answer.get_json()["error"]
    finally:
        off.service.close()


def test_hits_and_misses_are_metrics(pulling: Pulling) -> None:
    give_context(pulling.store, checkout("ada@example.com"))
    pulling.pull("ada@example.com")
    pulling.pull("ada@example.com")
    text = pulling.client.get("/metrics").get_data(as_text=True)
    assert 'dcb_pull_cache_lookups_total{layer="l1",result="miss"} 1.0' in text
    assert 'dcb_pull_cache_lookups_total{layer="l2",result="miss"} 1.0' in text
    assert 'dcb_pull_cache_lookups_total{layer="l1",result="hit"} 1.0' in text
    assert 'dcb_pull_cache_entry_age_seconds_count{layer="l1"} 1.0' in text
    assert 'dcb_requests_total{endpoint="blocks",status="200"} 2.0' in text


def test_an_event_through_the_pipeline_changes_what_is_pulled(pull_settings: Settings) -> None:
    """End to end: the event API queues, a processor commits, the next pull misses."""
    service = build_service(pull_settings, workers=1)
    service.start()
    client = service.app.test_client()
    try:
        url = "/v1/blocks/klaviyo/default/ada@example.com"
        before = client.get(url, headers=BEARER)
        assert before.get_json()["decided"] is False
        sent = client.post(
            "/v1/events",
            json=checkout("ada@example.com"),
            headers={"Authorization": f"Bearer {EVENTS_KEY}"},
        )
        assert sent.status_code == 202, sent.text
        wait_for(lambda: client.get(url, headers=BEARER).get_json()["decided"])
        after = client.get(url, headers=BEARER)
        assert after.get_json()["block"] == "personalized_offer"
        assert after.headers["ETag"] != before.headers["ETag"]
        assert client.get(url, headers={"Authorization": f"Bearer {EVENTS_KEY}"}).status_code == 401
    finally:
        service.stop(drain=False, drain_seconds=2)
