"""A running connector (web app + workers on the embedded store) against the fake APIs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from connector.bootstrap import build_service
from connector.clients import provision
from connector.service import Service
from connector.settings import Settings
from tests.fakes.fake_hubspot import FakeHubSpotApi
from tests.fakes.fake_klaviyo import FakeKlaviyoApi
from tests.waiting import wait_for

PUBLIC_URL = "https://hooks.shop.example"
HUBSPOT_SECRET = "hs-client-secret"
KLAVIYO_SECRET = "kl-webhook-secret"
FLOW_TOKEN = "flow-token-1"
EVENTS_KEY = "events-key-1"


@dataclass
class Running:
    service: Service
    client: FlaskClient
    hubspot: FakeHubSpotApi
    klaviyo: FakeKlaviyoApi

    def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        wait_for(check, timeout)


def settings_for(
    data: Path, hubspot: FakeHubSpotApi, klaviyo: FakeKlaviyoApi, **extra: str
) -> Settings:
    env = {
        "DCB_DATA_DIR": str(data),
        "DCB_PUBLIC_URL": PUBLIC_URL,
        "DCB_HUBSPOT_ACCESS_TOKEN": hubspot.token,
        "DCB_HUBSPOT_API_URL": hubspot.base_url,
        "DCB_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
        "DCB_KLAVIYO_API_KEY": klaviyo.api_key,
        "DCB_KLAVIYO_API_URL": klaviyo.base_url,
        "DCB_KLAVIYO_WEBHOOK_SECRET": KLAVIYO_SECRET,
        "DCB_KLAVIYO_FLOW_TOKEN": FLOW_TOKEN,
        "DCB_EVENTS_API_KEY": EVENTS_KEY,
        "DCB_FLUSH_MS": "10",
        **extra,
    }
    return Settings.from_env(env)


@pytest.fixture
def fakes() -> Iterator[tuple[FakeHubSpotApi, FakeKlaviyoApi]]:
    hubspot, klaviyo = FakeHubSpotApi(), FakeKlaviyoApi()
    yield hubspot, klaviyo
    hubspot.close()
    klaviyo.close()


@pytest.fixture(params=["embedded", "redis"])
def running(
    request: pytest.FixtureRequest, tmp_path: Path, fakes: tuple[FakeHubSpotApi, FakeKlaviyoApi]
) -> Iterator[Running]:
    """The connector on the embedded store, and on Redis (web and two processor loops)."""
    yield from start(request, tmp_path, fakes)


@pytest.fixture(params=["embedded", "redis"])
def abandoning(
    request: pytest.FixtureRequest, tmp_path: Path, fakes: tuple[FakeHubSpotApi, FakeKlaviyoApi]
) -> Iterator[Running]:
    """The same, with a two-second cart abandonment window."""
    yield from start(request, tmp_path, fakes, DCB_ABANDON_AFTER="2s")


#: A rule set whose city offer `requires` the city, which the events here never carry.
LATE_RULES = """\
ruleset: late
version: 1
rules:
  - id: nyc
    when: {profile.city: {in: [New York, NYC]}}
    requires: [profile.city]
    block: localized_offer
    params: {discount_percent: 10, city: NYC}
fallback: {block: we_noticed}
delayed_data: {block: back_soon}
"""


@pytest.fixture(params=["embedded", "redis"])
def fetching(
    request: pytest.FixtureRequest, tmp_path: Path, fakes: tuple[FakeHubSpotApi, FakeKlaviyoApi]
) -> Iterator[Running]:
    """The connector deciding with a rule that requires a field read from the platform."""
    rules = tmp_path / "late.yaml"
    rules.write_text(LATE_RULES, "utf-8")
    yield from start(request, tmp_path, fakes, DCB_RULES=str(rules), DCB_FETCH_BUDGET_MS="80")


def start(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fakes: tuple[FakeHubSpotApi, FakeKlaviyoApi],
    **env: str,
) -> Iterator[Running]:
    hubspot, klaviyo = fakes
    extra: dict[str, str] = dict(env)
    if request.param == "redis":
        request.getfixturevalue("redis_client")  # flushed
        extra["DCB_REDIS_URL"] = request.getfixturevalue("redis_url")
    settings = settings_for(tmp_path / "data", hubspot, klaviyo, **extra)
    service = build_service(settings, workers=2 if "DCB_REDIS_URL" in extra else 1)
    provision(service.app.extensions["dcb"]["clients"])
    service.start()
    yield Running(service, service.app.test_client(), hubspot, klaviyo)
    service.stop(drain=False, drain_seconds=2)
