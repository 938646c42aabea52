"""A running connector with the public HubSpot app installed through OAuth, against one
`FakeHubSpotApi` that serves every portal (token endpoint included).

The connector and the fake share a `MovableClock` the test moves, so token expiry passes
at once. `Connector` installs portals the way a browser does (`/oauth/hubspot/start`, the
user's consent, `/oauth/hubspot/callback`) and posts what HubSpot would: webhooks signed
with the app's client secret, carrying a `portalId`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.fernet import Fernet
from flask.testing import FlaskClient

from adapters.storage.token_store import SqliteGrantStore
from connector.accounts import Accounts
from connector.bootstrap import build_service
from connector.runtime import Runtime
from connector.service import Service
from connector.settings import Settings
from tests.fakes.fake_hubspot import CLIENT_ID, CLIENT_SECRET, FakeHubSpotApi
from tests.waiting import wait_for
from webhooks.signatures import sign_hubspot_v3

PUBLIC_URL = "https://hooks.shop.example"
REDIRECT_URI = PUBLIC_URL + "/oauth/hubspot/callback"
EVENTS_KEY = "events-key-1"
PORTAL = "555"
KEY = Fernet.generate_key().decode()


class MovableClock:
    """Real time plus an offset the test (and the connector's sleeps) move forward, so a
    wait of minutes passes at once."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += max(0.0, seconds)

    sleep = advance


def oauth_env(data: Path, hubspot: FakeHubSpotApi, **extra: str) -> dict[str, str]:
    """The environment of a connector in OAuth mode (no private app token)."""
    return {
        "DCB_DATA_DIR": str(data),
        "DCB_PUBLIC_URL": PUBLIC_URL,
        "DCB_HUBSPOT_API_URL": hubspot.base_url,
        "DCB_HUBSPOT_CLIENT_ID": CLIENT_ID,
        "DCB_HUBSPOT_CLIENT_SECRET": CLIENT_SECRET,
        "DCB_SECRET_KEY": KEY,
        "DCB_EVENTS_API_KEY": EVENTS_KEY,
        "DCB_FLUSH_MS": "0",
        **extra,
    }


def oauth_settings(data: Path, hubspot: FakeHubSpotApi, **extra: str) -> Settings:
    return Settings.from_env(oauth_env(data, hubspot, **extra))


def portal_item(object_id: str, portal: str | int, event_id: int) -> dict[str, Any]:
    """One `contact.creation` notification from `portal`, as the public app receives it."""
    return {"objectId": int(object_id), "eventId": event_id, "subscriptionId": 2,
            "portalId": int(portal), "appId": 4, "occurredAt": int(time.time() * 1000),
            "subscriptionType": "contact.creation", "attemptNumber": 0}  # fmt: skip


@dataclass
class Connector:
    service: Service
    client: FlaskClient
    hubspot: FakeHubSpotApi
    clock: MovableClock
    data: Path

    def wait_for(self, check: Any, timeout: float = 10.0) -> None:
        wait_for(check, timeout)

    def install(self, portal: str = PORTAL) -> Any:
        """Install the app on `portal` as a browser would; the callback's page."""
        started = self.client.get("/oauth/hubspot/start", base_url=PUBLIC_URL)
        state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
        code = self.hubspot.authorize(portal, REDIRECT_URI)
        return self.client.get(
            f"/oauth/hubspot/callback?code={code}&state={state}", base_url=PUBLIC_URL
        )

    def webhook(self, *items: dict[str, Any], secret: str = CLIENT_SECRET) -> Any:
        """POST app webhook notifications signed (v3) with `secret`, the app's by default."""
        body = json.dumps(list(items)).encode()
        timestamp = str(int(time.time() * 1000))
        path = "/webhooks/hubspot"
        signature = sign_hubspot_v3(secret, "POST", PUBLIC_URL + path, body, timestamp)
        headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp,
                   "Content-Type": "application/json"}  # fmt: skip
        return self.client.post(path, data=body, headers=headers)

    def checkout(self, email: str, event_id: str, key: str = EVENTS_KEY) -> None:
        send_checkout(self.client, email, event_id, key)

    def landed(self, email: str) -> bool:
        contact = self.hubspot.by_email(email)
        return bool(contact and contact.properties.get("dcb_block"))

    def written(self, contact_id: str) -> bool:
        return bool(self.hubspot.contacts[contact_id].properties.get("dcb_block"))

    def grants(self) -> SqliteGrantStore:
        return self.service.app.extensions["dcb"]["grants"]  # type: ignore[no-any-return]

    def store(self) -> Any:
        return self.service.app.extensions["dcb"]["store"]

    def queued(self) -> int:
        """Events waiting in the queue, every account's."""
        accounts = self.store().status(time.time())["accounts"]
        return sum(int(a.get("queued", 0)) for a in accounts.values())


@contextmanager
def started(
    settings: Settings,
    hubspot: FakeHubSpotApi,
    clock: MovableClock,
    accounts: Accounts | None = None,
) -> Iterator[Connector]:
    """The connector (web and one worker) on the settings, started, stopped after."""
    runtime = Runtime(epoch=clock, sleep=clock.sleep)
    service = build_service(settings, runtime, accounts=accounts)
    service.start()
    try:
        yield Connector(service, service.app.test_client(), hubspot, clock, settings.data_dir)
    finally:
        service.stop(drain=False, drain_seconds=2)


def send_checkout(client: FlaskClient, email: str, event_id: str, key: str = EVENTS_KEY) -> None:
    """POST a first-party `checkout_started` for `email` to `/v1/events`; it must be taken."""
    event = {
        "type": "checkout_started",
        "event_id": event_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "profile": {"email": email},
        "properties": {"cart_value": 200.0, "checkout_url": "https://shop.example/c/1"},
    }
    response = client.post("/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.json
