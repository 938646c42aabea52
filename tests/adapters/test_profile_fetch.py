"""`fetch` (the `ProfileSource` port) of both clients: the real SDKs against the fake
platforms, on the same gate (rate windows and pauses) as the writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.klaviyo.client import PROFILES, KlaviyoClient, klaviyo_throttle
from connector.core.events import ProfileRef
from connector.core.pauses import Pauses
from connector.core.ports import FetchStatus, ProfileWrite, WriteStatus
from connector.manifest import load_manifest
from tests.fakes.clock import FakeClock
from tests.fakes.fake_hubspot import FakeHubSpotApi, hs_error, rate_limited
from tests.fakes.fake_klaviyo import FakeKlaviyoApi, error, throttled
from tests.fakes.http_fake import Fault

FIELDS = ("city", "country", "first_name", "loyalty_tier", "is_new", "created_at")


@dataclass
class HubSpotRig:
    api: FakeHubSpotApi
    client: HubSpotClient
    clock: FakeClock


@dataclass
class KlaviyoRig:
    api: FakeKlaviyoApi
    client: KlaviyoClient
    clock: FakeClock


@pytest.fixture
def hubspot() -> Iterator[HubSpotRig]:
    clock = FakeClock()
    with FakeHubSpotApi(clock=clock, limit_per_10s=3) as api:
        api.define_dcb_properties()
        api.define_property("loyalty_tier", "text")
        gate = hubspot_throttle(Pauses(clock), clock.sleep, clock, limit_per_10s=3)
        client = HubSpotClient("pat-test", base_url=api.base_url, gate=gate, timeout=0.5,
                               clock=clock, schema=load_manifest().property_schema)
        yield HubSpotRig(api, client, clock)


@pytest.fixture
def klaviyo() -> Iterator[KlaviyoRig]:
    clock = FakeClock()
    with FakeKlaviyoApi(clock=clock, limits={PROFILES: (2, 700)}) as api:
        gate = klaviyo_throttle(Pauses(clock), clock.sleep, clock, scale=2 / 75)  # 2/s
        client = KlaviyoClient("pk_test", base_url=api.base_url, gate=gate, sleep=clock.sleep,
                               timeout=0.5)
        yield KlaviyoRig(api, client, clock)
        assert api.rejected == []


def test_hubspot_reads_a_contact_by_id_with_the_mapped_properties(hubspot: HubSpotRig) -> None:
    record = hubspot.api.add_contact("ada@example.com", city="Boston", firstname="Ada",
                                     loyalty_tier="gold")
    found = hubspot.client.fetch(ProfileRef(hubspot_id=record), FIELDS)
    assert found.status is FetchStatus.FOUND
    assert found.fields["city"] == "Boston"
    assert found.fields["first_name"] == "Ada"
    assert found.fields["loyalty_tier"] == "gold"
    assert "country" not in found.fields  # unset on the contact: absent, not empty
    assert found.fields["created_at"] == hubspot.api.contacts[record].created_at
    assert found.updated_at is not None
    (read,) = hubspot.api.reads()
    assert read.path == f"/crm/v3/objects/contacts/{record}"
    asked = {n for v in read.query["properties"] for n in v.split(",")}
    assert {"city", "country", "firstname", "loyalty_tier", "createdate"} <= asked


def test_hubspot_reads_by_email_and_unknown_is_skipped(hubspot: HubSpotRig) -> None:
    hubspot.api.add_contact("ada@example.com", country="US")
    found = hubspot.client.fetch(ProfileRef(email="ada@example.com"), ("country",))
    assert found.status is FetchStatus.FOUND and found.fields == {"country": "US"}
    assert hubspot.api.reads()[-1].query["idProperty"] == ["email"]
    missing = hubspot.client.fetch(ProfileRef(email="nobody@example.com"), ("country",))
    assert missing.status is FetchStatus.SKIPPED


def test_hubspot_down_or_throttled_is_retry_and_a_429_pauses_the_writes_too(
    hubspot: HubSpotRig,
) -> None:
    record = hubspot.api.add_contact("ada@example.com")
    hubspot.api.script(Fault(reply=hs_error(503, "SERVICE_UNAVAILABLE", "down"), method="GET"))
    down = hubspot.client.fetch(ProfileRef(hubspot_id=record), ("city",))
    assert down.status is FetchStatus.RETRY and "503" in down.reason
    hubspot.api.script(Fault(reply=rate_limited("TEN_SECONDLY_ROLLING", 4), method="GET"))
    limited = hubspot.client.fetch(ProfileRef(hubspot_id=record), ("city",))
    assert limited.status is FetchStatus.RETRY and limited.retry_after == 4.0
    # the account is paused: a read answers at once, without a call
    calls = len(hubspot.api.requests)
    paused = hubspot.client.fetch(ProfileRef(hubspot_id=record), ("city",))
    assert paused.status is FetchStatus.RETRY and len(hubspot.api.requests) == calls
    # and the write waits the same pause out before it calls
    (written,) = hubspot.client.write([ProfileWrite("k", ProfileRef(hubspot_id=record),
                                                    {"dcb_block": "x"})])
    assert written.status is WriteStatus.WRITTEN
    assert hubspot.api.calls_during_pause == 0


def test_hubspot_reads_and_writes_share_one_rate_window(hubspot: HubSpotRig) -> None:
    record = hubspot.api.add_contact("ada@example.com")
    start = hubspot.clock()
    for _ in range(3):  # the whole window of 3 calls per 10 s
        assert hubspot.client.fetch(ProfileRef(hubspot_id=record), ("city",)).status is (
            FetchStatus.FOUND)
    (written,) = hubspot.client.write([ProfileWrite("k", ProfileRef(hubspot_id=record),
                                                    {"dcb_block": "x"})])
    assert written.status is WriteStatus.WRITTEN
    assert hubspot.clock() - start >= 10.0  # the write waited for the window
    assert not [r for r in hubspot.api.requests if r.at < start + 10.0 and r.method == "POST"]


def test_klaviyo_reads_by_id_email_and_external_id(klaviyo: KlaviyoRig) -> None:
    pid = klaviyo.api.add_profile("ada@example.com", "u-1", first_name="Ada",
                                  location={"city": "New York", "country": "United States"},
                                  properties={"loyalty_tier": "gold"})
    for ref in (ProfileRef(klaviyo_id=pid), ProfileRef(email="ada@example.com"),
                ProfileRef(external_id="u-1")):
        found = klaviyo.client.fetch(ref, FIELDS)
        assert found.status is FetchStatus.FOUND, found.reason
        assert found.fields["city"] == "New York"
        assert found.fields["country"] == "United States"
        assert found.fields["first_name"] == "Ada"
        assert found.fields["loyalty_tier"] == "gold"
        assert "created_at" in found.fields and found.updated_at is not None
        klaviyo.clock.advance(1.0)  # the fake's per-second window: 2 reads
    reads = klaviyo.api.reads()
    assert reads[0].path == f"/api/profiles/{pid}"
    assert reads[1].query["filter"] == ['equals(email,"ada@example.com")']
    assert reads[2].query["filter"] == ['equals(external_id,"u-1")']


def test_klaviyo_unknown_profile_is_skipped(klaviyo: KlaviyoRig) -> None:
    assert klaviyo.client.fetch(ProfileRef(klaviyo_id="01KNOPE"), ("city",)).status is (
        FetchStatus.SKIPPED)
    assert klaviyo.client.fetch(ProfileRef(email="no@example.com"), ("city",)).status is (
        FetchStatus.SKIPPED)


def test_klaviyo_429_pauses_the_profiles_endpoint_and_5xx_is_retry(klaviyo: KlaviyoRig) -> None:
    pid = klaviyo.api.add_profile("ada@example.com")
    klaviyo.api.script(Fault(reply=error(503, "error", "Service unavailable", "down"),
                             method="GET"))
    assert klaviyo.client.fetch(ProfileRef(klaviyo_id=pid), ("city",)).status is (
        FetchStatus.RETRY)
    klaviyo.api.script(Fault(reply=throttled(3), method="GET"))
    limited = klaviyo.client.fetch(ProfileRef(klaviyo_id=pid), ("city",))
    assert limited.status is FetchStatus.RETRY and limited.retry_after == 3.0
    calls = len(klaviyo.api.requests)
    assert klaviyo.client.fetch(ProfileRef(klaviyo_id=pid), ("city",)).status is (
        FetchStatus.RETRY)
    assert len(klaviyo.api.requests) == calls  # paused: no call
    assert klaviyo.client.provision().problems == ()  # provision waits the pause out
    assert klaviyo.api.calls_during_pause == 0


def test_klaviyo_reads_share_the_profiles_rate_window(klaviyo: KlaviyoRig) -> None:
    pid = klaviyo.api.add_profile("ada@example.com")
    start = klaviyo.clock()
    for _ in range(3):  # 2 per second on this fake
        assert klaviyo.client.fetch(ProfileRef(klaviyo_id=pid), ("city",)).status is (
            FetchStatus.FOUND)
    assert klaviyo.clock() > start  # the third waited for the next second
    assert klaviyo.api.calls_during_pause == 0
