"""End to end on the embedded store: a request in, the fake platform holds the properties."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.bootstrap import build_service
from tests.e2e.conftest import (
    EVENTS_KEY,
    FLOW_TOKEN,
    HUBSPOT_SECRET,
    KLAVIYO_SECRET,
    PUBLIC_URL,
    Running,
    settings_for,
)
from tests.fakes.http_fake import Fault
from webhooks.signatures import sign_hubspot_v3, sign_klaviyo


def hubspot_headers(path: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000))
    signature = sign_hubspot_v3(HUBSPOT_SECRET, "POST", PUBLIC_URL + path, body, timestamp)
    return {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def notification(object_id: int | str, kind: str, event_id: int, **fields: Any) -> bytes:
    """One HubSpot app webhook notification, as a batch body of one."""
    item = {
        "objectId": int(object_id),
        "eventId": event_id,
        "subscriptionId": 2,
        "portalId": 33,
        "appId": 4,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": kind,
        "attemptNumber": 0,
        **fields,
    }
    return json.dumps([item]).encode()


def post_hubspot(running: Running, body: bytes) -> Any:
    """POST a body to the HubSpot webhook URL, signed as HubSpot signs it."""
    path = "/webhooks/hubspot"
    return running.client.post(path, data=body, headers=hubspot_headers(path, body))


def test_signed_hubspot_webhook_lands_dcb_properties(running: Running) -> None:
    contact = running.hubspot.add_contact("ada@example.com")
    body = notification(contact, "contact.creation", 1)
    response = post_hubspot(running, body)
    assert response.status_code == 202, response.json
    assert response.json["accepted"] == 1
    running.wait_for(
        lambda: running.hubspot.contacts[contact].properties.get("dcb_block") == "onboarding"
    )
    props = running.hubspot.contacts[contact].properties
    assert props["dcb_rule"] == "onboarding"
    assert props["dcb_variant"] == "treatment"
    assert props["dcb_computed_at"].endswith("Z")
    again = post_hubspot(running, body)
    assert again.status_code == 200 and again.json["duplicates"] == 1


def test_first_party_event_reaches_both_platforms(running: Running) -> None:
    event = {
        "type": "checkout_started",
        "event_id": "e-1",
        "occurred_at": datetime.now(UTC).isoformat(),
        "profile": {"email": "bob@example.com"},
        "properties": {"cart_value": 200.0, "checkout_url": "https://shop.example/c/1"},
    }
    response = running.client.post(
        "/v1/events", json=event, headers={"Authorization": f"Bearer {EVENTS_KEY}"}
    )
    assert response.status_code == 202, response.json

    def both() -> bool:
        contact = running.hubspot.by_email("bob@example.com")
        profile = running.klaviyo.by_email("bob@example.com")
        return bool(
            contact
            and profile
            and contact.properties.get("dcb_block")
            and profile.properties.get("dcb_block")
        )

    running.wait_for(both)
    contact = running.hubspot.by_email("bob@example.com")
    profile = running.klaviyo.by_email("bob@example.com")
    assert contact is not None and profile is not None
    assert (
        contact.properties["dcb_block"] == profile.properties["dcb_block"] == "personalized_offer"
    )
    assert contact.properties["dcb_cta_url"] == "https://shop.example/c/1"
    declared = {
        p["name"]
        for p in json.loads((Path(__file__).resolve().parents[2] / "manifest.json").read_text())[
            "properties"
        ]
    }
    for written in (contact.properties, profile.properties):
        assert {k for k in written if k.startswith("dcb_")} == declared


def test_a_contact_created_by_email_is_the_same_profile_when_hubspot_names_its_id(
    running: Running,
) -> None:
    """The connector creates the contact by email; HubSpot's webhooks then name only its
    record id. They must reach the same profile (with its cart), not start a blank one
    whose decisions would overwrite the contact's with ones made without the cart."""
    event = {
        "type": "checkout_started",
        "event_id": "link-1",
        "occurred_at": datetime.now(UTC).isoformat(),
        "profile": {"email": "lin@example.com"},
        "properties": {"cart_value": 200.0, "checkout_url": "https://shop.example/c/9"},
    }
    response = running.client.post(
        "/v1/events", json=event, headers={"Authorization": f"Bearer {EVENTS_KEY}"}
    )
    assert response.status_code == 202, response.json
    running.wait_for(lambda: running.hubspot.by_email("lin@example.com") is not None)
    contact = running.hubspot.by_email("lin@example.com")
    assert contact is not None
    store = running.service.app.extensions["dcb"]["store"]
    running.wait_for(
        lambda: store.resolve_profile("default", {"hubspot_id": contact.id}) == "email:lin@example.com"
    )
    hook = post_hubspot(running, notification(contact.id, "contact.creation", 77))
    assert hook.status_code == 202, hook.json
    running.wait_for(lambda: running.service.app.extensions["dcb"]["store"].depth() == 0)
    context = store.load_context("default", "email:lin@example.com")
    assert context["identifiers"]["hubspot_id"] == str(contact.id)
    assert store.load_context("default", f"hubspot_id:{contact.id}") is None  # no second profile
    assert context["cart_value"] == 200.0 and context["last_event"]["type"] == "profile_created"


def test_klaviyo_flow_webhook(running: Running) -> None:
    profile_id = running.klaviyo.add_profile("cy@example.com")
    body = json.dumps(
        {
            "profile_id": profile_id,
            "email": "cy@example.com",
            "metric": "Started Checkout",
            "event_id": "ck-1",
            "value": "212.50",
            "checkout_url": "https://shop.example/checkout/8812",
        }
    ).encode()
    response = running.client.post(
        "/webhooks/klaviyo/flow",
        data=body,
        headers={"X-DCB-Token": FLOW_TOKEN, "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.json
    running.wait_for(
        lambda: bool(
            (p := running.klaviyo.by_email("cy@example.com")) and p.properties.get("dcb_block")
        )
    )


def test_refusals(running: Running) -> None:
    body = b"[]"
    bad = hubspot_headers("/webhooks/hubspot", body)
    bad["X-HubSpot-Signature-v3"] = "nope"
    assert running.client.post("/webhooks/hubspot", data=body, headers=bad).status_code == 401
    stale = {**hubspot_headers("/webhooks/hubspot", body), "X-HubSpot-Request-Timestamp": "1000"}
    assert running.client.post("/webhooks/hubspot", data=body, headers=stale).status_code == 401
    not_json = b"{nope"
    response = running.client.post(
        "/webhooks/hubspot", data=not_json, headers=hubspot_headers("/webhooks/hubspot", not_json)
    )
    assert response.status_code == 400 and "not JSON" in response.json["error"]
    assert running.client.post("/v1/events", json={"type": "x"}).status_code == 401
    invalid = running.client.post(
        "/v1/events",
        json={"type": "nope", "profile": {"email": "a@b.c"}},
        headers={"Authorization": f"Bearer {EVENTS_KEY}"},
    )
    assert invalid.status_code == 400
    assert "unknown event type" in json.dumps(invalid.json)
    big = b"[" + b" " * (1024 * 1024) + b"]"
    assert (
        running.client.post(
            "/webhooks/hubspot", data=big, headers=hubspot_headers("/webhooks/hubspot", big)
        ).status_code
        == 413
    )
    ts = "Thu, 04 Jan 2024 18:05:25 GMT"
    body = b'{"data": [], "meta": {"klaviyo_webhook_id": "w"}}'
    headers = {
        "Klaviyo-Signature": sign_klaviyo(KLAVIYO_SECRET, body, ts),
        "Klaviyo-Timestamp": ts,
        "Klaviyo-Webhook-Id": "w",
    }
    assert running.client.post("/webhooks/klaviyo", data=body, headers=headers).status_code == 401


def test_echo_of_our_own_write_is_acknowledged_and_dropped(running: Running) -> None:
    body = notification(1, "contact.propertyChange", 9, propertyName="dcb_block", propertyValue="x")
    response = post_hubspot(running, body)
    assert response.status_code == 202
    assert (response.json["accepted"], response.json["dropped"]) == (0, 1)


def test_health_ready_and_metrics(running: Running) -> None:
    assert running.client.get("/healthz").status_code == 200
    assert running.client.get("/readyz").json["store"] == "ok"
    assert b"dcb_requests" in running.client.get("/metrics").data


def test_an_abandoned_cart_reaches_the_platform_within_the_window_and_a_second(
    abandoning: Running,
) -> None:
    event = {
        "type": "checkout_started",
        "event_id": "ab-1",
        "occurred_at": datetime.now(UTC).isoformat(),
        "profile": {"email": "abby@example.com"},
        "properties": {"cart_value": 40.0, "checkout_url": "https://shop.example/c/ab"},
    }
    sent = time.monotonic()
    response = abandoning.client.post(
        "/v1/events", json=event, headers={"Authorization": f"Bearer {EVENTS_KEY}"}
    )
    assert response.status_code == 202

    def abandoned() -> bool:
        contact = abandoning.hubspot.by_email("abby@example.com")
        return bool(contact and contact.properties.get("dcb_block") == "cart_abandonment")

    abandoning.wait_for(abandoned, timeout=6.0)
    elapsed = time.monotonic() - sent
    print(f"abandoned cart landed {elapsed:.2f} s after the checkout")
    assert elapsed <= 2.0 + 1.0


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path, fakes: Any) -> None:
    hubspot, klaviyo = fakes
    settings = settings_for(tmp_path / "data", hubspot, klaviyo, DCB_QUEUE_LIMIT="1")
    service = build_service(settings, workers=0)  # nothing drains the queue
    client = service.app.test_client()
    auth = {"Authorization": f"Bearer {EVENTS_KEY}"}
    first = {"type": "cart_updated", "event_id": "q1", "profile": {"email": "q@example.com"}}
    assert client.post("/v1/events", json=first, headers=auth).status_code == 202
    full = client.post("/v1/events", json={**first, "event_id": "q2"}, headers=auth)
    assert full.status_code == 429 and full.headers["Retry-After"] == "5"
    body = json.dumps({"objectId": 101, "email": "q@example.com", "properties": {}}).encode()
    path = "/webhooks/hubspot/workflow"
    workflow = client.post(path, data=body, headers=hubspot_headers(path, body))
    assert workflow.status_code == 429 and workflow.headers["Retry-After"] == "5000"  # ms
    service.close()


def test_a_hubspot_deletion_erases_what_we_hold_on_the_contact(running: Running) -> None:
    contact = running.hubspot.add_contact("del@example.com")

    def notify(kind: str, event_id: int) -> None:
        response = post_hubspot(running, notification(contact, kind, event_id))
        assert response.status_code == 202, response.json

    store = running.service.app.extensions["dcb"]["store"]
    key = f"hubspot_id:{contact}"
    notify("contact.creation", 1)
    running.wait_for(lambda: store.load_context("default", key) is not None)
    notify("contact.deletion", 2)
    running.wait_for(lambda: store.load_context("default", key) is None)
    assert store.resolve_profile("default", {"hubspot_id": contact}) is None


def _blocks_written(running: Running, email: str) -> list[str]:
    return [
        i["properties"]["dcb_block"]
        for r in running.hubspot.batch_calls()
        for i in r.body["inputs"]
        if i.get("id") == email or i.get("id") in {c.id for c in running.hubspot.contacts.values()
                                                   if c.properties.get("email") == email}
    ]  # fmt: skip


def _post_event(running: Running, email: str) -> None:
    event = {
        "type": "cart_updated",
        "occurred_at": datetime.now(UTC).isoformat(),
        "profile": {"email": email},
        "properties": {"cart_value": 40.0},
    }
    response = running.client.post(
        "/v1/events", json=event, headers={"Authorization": f"Bearer {EVENTS_KEY}"}
    )
    assert response.status_code == 202, response.json


def test_a_field_read_in_time_writes_only_the_real_block(fetching: Running) -> None:
    fetching.hubspot.add_contact("ada@example.com", city="New York")
    clients = fetching.service.app.extensions["dcb"]["clients"]
    late = fetching.service.processors[0].late_data
    assert late is not None
    assert late.sources["default"]["hubspot"] is clients["default"]["hubspot"][0]  # one gate
    _post_event(fetching, "ada@example.com")
    fetching.wait_for(lambda: _blocks_written(fetching, "ada@example.com") != [])
    time.sleep(0.3)  # nothing else follows
    assert _blocks_written(fetching, "ada@example.com") == ["localized_offer"]
    assert len(fetching.hubspot.reads()) == 1


def test_a_field_read_too_late_writes_the_delayed_block_then_the_real_one(
    fetching: Running,
) -> None:
    fetching.hubspot.add_contact("ada@example.com", city="New York")
    fetching.hubspot.script(Fault(delay=0.6, method="GET"))
    _post_event(fetching, "ada@example.com")
    fetching.wait_for(lambda: len(_blocks_written(fetching, "ada@example.com")) >= 2)
    assert _blocks_written(fetching, "ada@example.com") == ["back_soon", "localized_offer"]
