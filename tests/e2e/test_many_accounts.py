"""Many accounts in one connector: two HubSpot and two Klaviyo accounts, each with its own
fake platform API, on the embedded store and on Redis.

Every write lands in its own account; a request verified for one account cannot touch
another; one account answering 429 for a minute does not delay the others' writes;
`dcb accounts remove` erases one account only.
"""

from __future__ import annotations

import io
import json
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from connector.accounts import Accounts, load_accounts
from connector.bootstrap import build_service
from connector.cli.accounts import remove_account
from connector.clients import provision
from connector.core.storage import Inbound
from connector.runtime import open_store
from connector.service import Service
from tests.fakes.fake_hubspot import FakeHubSpotApi
from tests.fakes.fake_klaviyo import FakeKlaviyoApi
from tests.waiting import wait_for
from webhooks.signatures import sign_hubspot_v3, sign_klaviyo

PUBLIC_URL = "https://hooks.agency.example"
CONFIG = """
    [[accounts]]
    name = "hub-a"
    platform = "hubspot"
    account_id = "101"
    access_token = { env = "HUB_A_TOKEN" }
    client_secret = { env = "HUB_A_SECRET" }
    events_api_key = { env = "HUB_A_EVENTS" }
    api_url = "%(hub_a)s"

    [[accounts]]
    name = "hub-b"
    platform = "hubspot"
    account_id = "202"
    access_token = { env = "HUB_B_TOKEN" }
    client_secret = { env = "HUB_B_SECRET" }
    api_url = "%(hub_b)s"

    [[accounts]]
    name = "kla-a"
    platform = "klaviyo"
    account_id = "KA"
    api_key = { env = "KLA_A_KEY" }
    flow_token = { env = "KLA_A_FLOW" }
    webhook_secret = { env = "KLA_A_HOOK" }
    api_url = "%(kla_a)s"

    [[accounts]]
    name = "kla-b"
    platform = "klaviyo"
    account_id = "KB"
    api_key = { env = "KLA_B_KEY" }
    flow_token = { env = "KLA_B_FLOW" }
    webhook_secret = { env = "KLA_B_HOOK" }
    events_api_key = { env = "KLA_B_EVENTS" }
    api_url = "%(kla_b)s"
"""
SECRETS = {
    "HUB_A_TOKEN": "pat-a", "HUB_A_SECRET": "secret-a", "HUB_A_EVENTS": "events-a",
    "HUB_B_TOKEN": "pat-b", "HUB_B_SECRET": "secret-b",
    "KLA_A_KEY": "pk_a", "KLA_A_FLOW": "flow-a", "KLA_A_HOOK": "hook-a",
    "KLA_B_KEY": "pk_b", "KLA_B_FLOW": "flow-b", "KLA_B_HOOK": "hook-b",
    "KLA_B_EVENTS": "events-b",
}  # fmt: skip
PORTAL = {"secret-a": 101, "secret-b": 202}


@dataclass
class Agency:
    service: Service
    client: FlaskClient
    env: dict[str, str]
    accounts: Accounts
    hub_a: FakeHubSpotApi
    hub_b: FakeHubSpotApi
    kla_a: FakeKlaviyoApi
    kla_b: FakeKlaviyoApi

    def hubspot(self, secret: str, *items: dict[str, Any]) -> Any:
        body = json.dumps(list(items)).encode()
        timestamp = str(int(time.time() * 1000))
        path = "/webhooks/hubspot"
        signature = sign_hubspot_v3(secret, "POST", PUBLIC_URL + path, body, timestamp)
        headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp,
                   "Content-Type": "application/json"}  # fmt: skip
        return self.client.post(path, data=body, headers=headers)

    def flow(self, token: str, email: str, event_id: str) -> Any:
        body = {"email": email, "metric": "Started Checkout", "event_id": event_id,
                "value": "120.00", "checkout_url": "https://shop.example/c/1"}  # fmt: skip
        return self.client.post("/webhooks/klaviyo/flow", json=body,
                                headers={"X-DCB-Token": token})  # fmt: skip

    def events(self, key: str, email: str, event_id: str) -> Any:
        event = {"type": "checkout_started", "event_id": event_id,
                 "occurred_at": datetime.now(UTC).isoformat(), "profile": {"email": email},
                 "properties": {"cart_value": 80.0, "checkout_url": "https://shop.example/c"}}  # fmt: skip
        return self.client.post("/v1/events", json=event,
                                headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def contact_item(object_id: str, portal: int, event_id: int) -> dict[str, Any]:
    return {"objectId": int(object_id), "eventId": event_id, "subscriptionId": 2,
            "portalId": portal, "appId": 4, "occurredAt": int(time.time() * 1000),
            "subscriptionType": "contact.creation", "attemptNumber": 0}  # fmt: skip


def written(fake: FakeHubSpotApi | FakeKlaviyoApi, email: str) -> bool:
    found = fake.by_email(email)
    return bool(found and found.properties.get("dcb_block"))


@pytest.fixture(params=["embedded", "redis"])
def agency(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Agency]:
    fakes = [FakeHubSpotApi("pat-a"), FakeHubSpotApi("pat-b"), FakeKlaviyoApi("pk_a"),
             FakeKlaviyoApi("pk_b")]  # fmt: skip
    names = ("hub_a", "hub_b", "kla_a", "kla_b")
    urls = dict(zip(names, (f.base_url for f in fakes), strict=True))
    config = tmp_path / "dcb.toml"
    config.write_text(textwrap.dedent(CONFIG % urls), encoding="utf-8")
    env = {"DCB_CONFIG": str(config), "DCB_DATA_DIR": str(tmp_path / "data"),
           "DCB_PUBLIC_URL": PUBLIC_URL, "DCB_FLUSH_MS": "10", **SECRETS}  # fmt: skip
    if request.param == "redis":
        request.getfixturevalue("redis_client")  # flushed
        env["DCB_REDIS_URL"] = request.getfixturevalue("redis_url")
    accounts = load_accounts(env)
    service = build_service(accounts.settings, accounts=accounts, workers=2)
    provision(service.app.extensions["dcb"]["clients"])
    service.start()
    yield Agency(service, service.app.test_client(), env, accounts, *fakes)  # type: ignore[arg-type]
    service.stop(drain=False, drain_seconds=2)
    for fake in fakes:
        fake.close()


def test_interleaved_traffic_lands_in_each_account(agency: Agency) -> None:
    a, b = agency.hub_a, agency.hub_b
    for _ in range(3):
        b.add_contact("someone-else@b.example")  # so ids differ: a write sent astray shows
    a_ids = [a.add_contact(f"hub-a-{i}@x.example") for i in range(4)]
    b_ids = [b.add_contact(f"hub-b-{i}@x.example") for i in range(4)]
    for i in range(4):
        assert agency.hubspot("secret-a", contact_item(a_ids[i], 101, i)).status_code == 202
        assert agency.flow("flow-a", f"kla-a-{i}@x.example", f"a{i}").status_code == 202
        assert agency.hubspot("secret-b", contact_item(b_ids[i], 202, i)).status_code == 202
        assert agency.flow("flow-b", f"kla-b-{i}@x.example", f"b{i}").status_code == 202
        assert agency.events("events-a", f"ev-a-{i}@x.example", f"e{i}").status_code == 202
        assert agency.events("events-b", f"ev-b-{i}@x.example", f"e{i}").status_code == 202

    def everything() -> bool:
        return (
            all(a.contacts[i].properties.get("dcb_block") for i in a_ids)
            and all(b.contacts[i].properties.get("dcb_block") for i in b_ids)
            and all(written(agency.kla_a, f"kla-a-{i}@x.example") for i in range(4))
            and all(written(agency.kla_b, f"kla-b-{i}@x.example") for i in range(4))
            and all(written(a, f"ev-a-{i}@x.example") for i in range(4))
            and all(written(agency.kla_b, f"ev-b-{i}@x.example") for i in range(4))
        )

    wait_for(everything)
    strays = [
        c for c in b.contacts.values() if c.properties.get("email") == "someone-else@b.example"
    ]
    assert all("dcb_block" not in c.properties for c in strays)
    assert not any(agency.kla_b.by_email(f"kla-a-{i}@x.example") for i in range(4))
    assert not any(agency.kla_a.by_email(f"kla-b-{i}@x.example") for i in range(4))
    assert not any(b.by_email(f"ev-a-{i}@x.example") for i in range(4))
    assert not any(agency.kla_a.by_email(f"ev-b-{i}@x.example") for i in range(4))
    for fake, token in ((a, "Bearer pat-a"), (b, "Bearer pat-b")):
        assert {r.headers["authorization"] for r in fake.requests} == {token}


def test_a_request_verified_for_one_account_cannot_touch_another(agency: Agency) -> None:
    b_id = agency.hub_b.add_contact("hub-b@x.example")
    a_id = agency.hub_a.add_contact("hub-a@x.example")
    # hub-a's secret, hub-b's portal: refused, nothing queued.
    foreign = agency.hubspot("secret-a", contact_item(b_id, 202, 1))
    assert foreign.status_code == 403 and foreign.json == {"error": "forbidden"}
    # A batch mixing both: hub-a's own event is taken, the other dropped with the reason.
    mixed = agency.hubspot("secret-a", contact_item(a_id, 101, 2), contact_item(b_id, 202, 3))
    assert mixed.status_code == 202 and mixed.json["accepted"] == 1
    assert mixed.json["dropped"] == 1 and "not this account's (101)" in mixed.json["reasons"][0]
    # A secret no account has, an API key no account has.
    assert agency.hubspot("secret-z", contact_item(a_id, 101, 4)).status_code == 401
    assert agency.events("events-z", "z@x.example", "z1").status_code == 401
    # Klaviyo: hub-a's events key only ever reaches hub-a's platform; kla-a's webhook
    # secret cannot carry kla-b's events.
    body = json.dumps({"data": [{"external_id": "ev1", "topic": "event:klaviyo.placed_order",
                                 "payload": _klaviyo_event("kla-b@x.example")}],
                       "meta": {"klaviyo_account_id": "KB", "klaviyo_webhook_id": "wh-1",
                                "timestamp": datetime.now(UTC).isoformat()}}).encode()  # fmt: skip
    stamp = datetime.now(UTC).isoformat()
    headers = {"Klaviyo-Webhook-Id": "wh-1", "Klaviyo-Timestamp": stamp,
               "Klaviyo-Signature": sign_klaviyo("hook-a", body, stamp),
               "Content-Type": "application/json"}  # fmt: skip
    assert agency.client.post("/webhooks/klaviyo", data=body, headers=headers).status_code == 403
    headers["Klaviyo-Signature"] = sign_klaviyo("hook-b", body, stamp)
    assert agency.client.post("/webhooks/klaviyo", data=body, headers=headers).status_code == 202
    wait_for(lambda: bool(agency.hub_a.contacts[a_id].properties.get("dcb_block")))
    time.sleep(0.3)  # time enough for a stray write to land
    assert "dcb_block" not in agency.hub_b.contacts[b_id].properties
    assert agency.kla_a.by_email("kla-b@x.example") is None


def _klaviyo_event(email: str) -> dict[str, Any]:
    return {"data": {"type": "event", "id": "ev1",
                     "attributes": {"timestamp": int(time.time()),
                                    "datetime": datetime.now(UTC).isoformat(),
                                    "uuid": "0a1b2c3d-0000-0000-0000-000000000009",
                                    "event_properties": {"$value": 50.0, "$email": email}},
                     "relationships": {"profile": {"data": {"type": "profile", "id": "P1"}},
                                       "metric": {"data": {"type": "metric", "id": "M1"}}}},
            "included": [{"type": "profile", "id": "P1", "attributes": {"email": email}},
                         {"type": "metric", "id": "M1", "attributes": {"name": "Placed Order"}}]}  # fmt: skip


def test_one_account_answering_429_for_a_minute_does_not_delay_the_others(agency: Agency) -> None:
    agency.hub_a.pause(60)  # every call to hub-a answers 429, Retry-After 60, for a minute
    agency.kla_a.pause("profile-import", 60)
    for i in range(5):
        agency.events("events-a", f"slow-{i}@x.example", f"s{i}")
        agency.flow("flow-a", f"slow-{i}@x.example", f"s{i}")
    time.sleep(0.3)  # the throttled accounts' dispatchers are now waiting out their pauses
    for i in range(5):
        agency.events("events-b", f"fast-{i}@x.example", f"f{i}")
        agency.hubspot("secret-b", contact_item(agency.hub_b.add_contact(f"fast-{i}@h.example"),
                                                202, i))  # fmt: skip
    took = wait_for(
        lambda: (
            all(written(agency.kla_b, f"fast-{i}@x.example") for i in range(5))
            and all(written(agency.hub_b, f"fast-{i}@h.example") for i in range(5))
        ),
        timeout=5.0,
    )
    print(f"\nthe other accounts' writes landed {took:.2f} s after they arrived")
    assert agency.hub_a.calls_during_pause >= 1 or agency.kla_a.calls_during_pause >= 1
    assert not any(written(agency.hub_a, f"slow-{i}@x.example") for i in range(5))
    assert not any(written(agency.kla_a, f"slow-{i}@x.example") for i in range(5))
    store = agency.service.app.extensions["dcb"]["store"]

    def accounts() -> Any:
        return store.status(time.time())["accounts"]

    # The fake holds a write before the connector has read its answer and settled it.
    wait_for(lambda: not {"pending"} & {*accounts().get("hub-b", {}), *accounts().get("kla-b", {})})
    assert accounts()["hub-a"]["pending"]["hubspot"]["writes"] == 5


def test_accounts_remove_erases_that_account_only(agency: Agency) -> None:
    a_id = agency.hub_a.add_contact("keep-a@x.example")
    b_id = agency.hub_b.add_contact("keep-b@x.example")
    agency.hubspot("secret-a", contact_item(a_id, 101, 1))
    agency.hubspot("secret-b", contact_item(b_id, 202, 1))
    wait_for(lambda: bool(agency.hub_a.contacts[a_id].properties.get("dcb_block"))
             and bool(agency.hub_b.contacts[b_id].properties.get("dcb_block")))  # fmt: skip
    agency.service.stop(drain=False, drain_seconds=2)  # as an operator would, first
    probes = [Inbound("hub-a", "probe", {}, ()), Inbound("hub-b", "probe", {}, ())]
    store = open_store(agency.accounts.settings)
    try:
        assert store.enqueue(probes, time.time()).accepted == 2  # one queued event each
    finally:
        store.close()
    out, err = io.StringIO(), io.StringIO()
    assert remove_account("hub-a", agency.env, out, err) == 0, err.getvalue()
    assert out.getvalue().startswith("removed account hub-a: 1 queued events, 1 profiles")
    assert "still configured" in err.getvalue()
    store = open_store(agency.accounts.settings)
    try:
        assert store.resolve_profile("hub-a", {"hubspot_id": a_id}) is None
        kept = store.resolve_profile("hub-b", {"hubspot_id": b_id})
        assert kept is not None and store.load_context("hub-b", kept) is not None
        again = store.enqueue(probes, time.time())  # hub-a's dedup state went, hub-b's stays
        assert (again.accepted, again.duplicates) == (1, 1)
        assert [c.account for c in store.claim("check", 10, time.time())] == ["hub-b", "hub-a"]
    finally:
        store.close()
