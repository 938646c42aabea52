"""One contract, three implementations of `PlatformClient`: the in-memory fake, and each
real client (official SDK) against its fake platform API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from connector.core.events import ProfileRef
from connector.core.pauses import Pauses
from connector.core.ports import PlatformClient, ProfileWrite, WriteStatus
from connector.manifest import load_manifest
from tests.fakes import fake_hubspot, fake_klaviyo
from tests.fakes.http_fake import Fault as HttpFault
from tests.fakes.http_fake import Reply
from tests.fakes.in_memory import Fault, InMemoryPlatformClient


@dataclass
class Harness:
    client: PlatformClient
    add_profile: Callable[[str], str]  # email -> platform id
    id_ref: Callable[[str], ProfileRef]  # platform id -> reference
    properties_of: Callable[[str], dict[str, str]]  # email -> stored dcb properties
    throttle_next: Callable[[int], None]
    fail_next: Callable[[], None]


def _memory() -> Iterator[Harness]:
    client = InMemoryPlatformClient(time.monotonic)

    def props(email: str) -> dict[str, str]:
        return next(p.properties for p in client.profiles.values() if p.email == email)

    yield Harness(
        client, client.add_profile, lambda pid: ProfileRef(hubspot_id=pid), props,
        lambda s: client.script(Fault("throttle", retry_after=s)),
        lambda: client.script(Fault("fail")),
    )


def _klaviyo() -> Iterator[Harness]:
    with fake_klaviyo.FakeKlaviyoApi() as api:
        gate = klaviyo_throttle(Pauses(time.monotonic), time.sleep, time.monotonic)
        client = KlaviyoClient("pk_test", base_url=api.base_url, gate=gate, sleep=time.sleep,
                               timeout=5.0)

        def props(email: str) -> dict[str, str]:
            profile = api.by_email(email)
            assert profile is not None
            return dict(profile.properties)

        yield Harness(
            client, lambda email: api.add_profile(email=email),
            lambda pid: ProfileRef(klaviyo_id=pid), props,
            lambda s: api.script(HttpFault(reply=fake_klaviyo.throttled(s))),
            lambda: api.script(HttpFault(reply=fake_klaviyo.error(503, "error", "Down", "x"))),
        )
        assert api.rejected == []


def _hubspot() -> Iterator[Harness]:
    with fake_hubspot.FakeHubSpotApi() as api:
        api.define_dcb_properties()
        gate = hubspot_throttle(Pauses(time.monotonic), time.sleep, time.monotonic)
        client = HubSpotClient("pat-test", base_url=api.base_url, gate=gate, timeout=5.0,
                               schema=load_manifest().property_schema)

        def props(email: str) -> dict[str, str]:
            contact = api.by_email(email)
            assert contact is not None
            return {k: v for k, v in contact.properties.items() if k.startswith("dcb_")}

        yield Harness(
            client, lambda email: api.add_contact(email),
            lambda pid: ProfileRef(hubspot_id=pid), props,
            lambda s: api.script(HttpFault(
                reply=fake_hubspot.rate_limited("TEN_SECONDLY_ROLLING", s))),
            lambda: api.script(HttpFault(reply=Reply(503, {"status": "error", "message": "x"}))),
        )


@pytest.fixture(params=["memory", "klaviyo", "hubspot"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    factory = {"memory": _memory, "klaviyo": _klaviyo, "hubspot": _hubspot}[request.param]
    yield from factory()


def _write(key: str, ref: ProfileRef, **properties: str) -> ProfileWrite:
    return ProfileWrite(key, ref, properties or {"dcb_block": "onboarding"})


def test_an_unknown_email_creates_the_profile(harness: Harness) -> None:
    (outcome,) = harness.client.write([_write("k", ProfileRef(email="new@example.com"),
                                              dcb_block="welcome", dcb_html="<b>hi</b>")])
    assert outcome.status is WriteStatus.WRITTEN and outcome.key == "k"
    assert harness.properties_of("new@example.com") == {"dcb_block": "welcome",
                                                         "dcb_html": "<b>hi</b>"}


def test_a_known_email_is_updated(harness: Harness) -> None:
    platform_id = harness.add_profile("ada@example.com")
    (outcome,) = harness.client.write([_write("k", ProfileRef(email="ada@example.com"))])
    assert outcome.status is WriteStatus.WRITTEN
    assert outcome.platform_id == platform_id
    assert harness.properties_of("ada@example.com") == {"dcb_block": "onboarding"}


def test_a_platform_id_is_written(harness: Harness) -> None:
    platform_id = harness.add_profile("bob@example.com")
    (outcome,) = harness.client.write([_write("k", harness.id_ref(platform_id), dcb_rule="r1")])
    assert outcome.status is WriteStatus.WRITTEN
    assert harness.properties_of("bob@example.com") == {"dcb_rule": "r1"}


def test_a_vanished_profile_is_skipped(harness: Harness) -> None:
    (outcome,) = harness.client.write([_write("k", harness.id_ref("99999"))])
    assert outcome.status is WriteStatus.SKIPPED


def test_an_invalid_email_is_fatal_and_the_rest_written(harness: Harness) -> None:
    writes = [_write("bad", ProfileRef(email="not-an-email")),
              _write("good", ProfileRef(email="good@example.com"))]
    outcomes = harness.client.write(writes)
    assert [(o.key, o.status) for o in outcomes] == [
        ("bad", WriteStatus.FATAL), ("good", WriteStatus.WRITTEN)]
    assert "not-an-email" not in outcomes[0].reason


def test_no_usable_identifier_is_fatal(harness: Harness) -> None:
    (outcome,) = harness.client.write([_write("k", ProfileRef())])
    assert outcome.status is WriteStatus.FATAL


def test_one_outcome_per_write_in_order(harness: Harness) -> None:
    writes = [_write(f"k{i}", ProfileRef(email=f"p{i}@example.com")) for i in range(7)]
    outcomes = harness.client.write(writes)
    assert [o.key for o in outcomes] == [w.key for w in writes]
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}


def test_a_429_is_a_throttled_retry_with_the_wait(harness: Harness) -> None:
    harness.throttle_next(1)
    (outcome,) = harness.client.write([_write("k", ProfileRef(email="t@example.com"))])
    assert outcome.status is WriteStatus.RETRY and outcome.throttled
    assert outcome.retry_after == pytest.approx(1.0, abs=0.05)


def test_a_5xx_is_a_plain_retry(harness: Harness) -> None:
    harness.fail_next()
    (outcome,) = harness.client.write([_write("k", ProfileRef(email="f@example.com"))])
    assert outcome.status is WriteStatus.RETRY and not outcome.throttled


def test_provisioning_reports_no_problem(harness: Harness) -> None:
    assert harness.client.provision().problems == ()
