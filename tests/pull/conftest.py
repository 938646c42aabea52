"""A web-only connector with the pull endpoint, on the embedded store and on Redis, and
helpers to give a profile a context the way the processor would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from connector.bootstrap import build_service
from connector.core.context import fold
from connector.core.events import parse_event
from connector.core.storage import ProfileUpdate
from connector.runtime import Store
from connector.service import Service
from connector.settings import Settings

PULL_KEY = "pull-key-1"
EVENTS_KEY = "events-key-1"
SIGNING_KEY = "url-signing-key-1"
BEARER = {"Authorization": f"Bearer {PULL_KEY}"}


def checkout(email: str, item: str = "Wool jacket", value: float = 200.0) -> dict[str, Any]:
    return {
        "type": "checkout_started",
        "event_id": f"{email}-{item}-{value}",
        "occurred_at": "2026-11-28T10:00:00Z",
        "profile": {"email": email, "external_id": f"x-{email}"},
        "properties": {
            "cart_value": value,
            "currency": "USD",
            "checkout_url": "https://shop.example/cart/42",
            "items": [{"product_id": "J-1", "name": item, "price": value, "quantity": 1}],
        },
    }


def give_context(store: Store, event: dict[str, Any]) -> str:
    """Fold `event` into its profile's stored context, as the processor commits it;
    returns the profile key."""
    now = datetime.now(UTC)
    parsed = parse_event(event, received_at=now)
    ids = dict(parsed.profile.identifiers())
    key = store.resolve_profile("default", ids) or f"email:{ids['email']}"
    context = fold(store.load_context("default", key) or {}, parsed)
    context["last_event"] = parsed.to_json()
    store.commit([ProfileUpdate("default", key, context, [], ids)], [], now.timestamp())
    return key


@dataclass
class Pulling:
    service: Service
    client: FlaskClient
    store: Store
    kind: str

    def pull(self, profile: str, platform: str = "klaviyo", **kwargs: Any) -> TestResponse:
        headers = {**BEARER, **kwargs.pop("headers", {})}
        query = kwargs.pop("query", "")
        return self.client.get(
            f"/v1/blocks/{platform}/default/{profile}{query}", headers=headers, **kwargs
        )


def settings(data: Path, redis_url: str | None = None, **extra: str) -> Settings:
    env = {
        "DCB_DATA_DIR": str(data),
        "DCB_PULL_API_KEYS": PULL_KEY,
        "DCB_EVENTS_API_KEY": EVENTS_KEY,
        "DCB_URL_SIGNING_KEY": SIGNING_KEY,
        **extra,
    }
    if redis_url is not None:
        env["DCB_REDIS_URL"] = redis_url
    return Settings.from_env(env)


def open_pulling(kind: str, config: Settings) -> Pulling:
    service = build_service(config, workers=0)
    return Pulling(service, service.app.test_client(), service.app.extensions["dcb"]["store"], kind)


@pytest.fixture(params=["embedded", "redis"])
def pull_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "redis":
        request.getfixturevalue("redis_client")  # flushed
        return settings(tmp_path / "data", request.getfixturevalue("redis_url"))
    return settings(tmp_path / "data")


@pytest.fixture
def pulling(pull_settings: Settings) -> Iterator[Pulling]:
    running = open_pulling("redis" if pull_settings.redis_url else "embedded", pull_settings)
    yield running
    running.service.close()


