"""KlaviyoClient (real SDK) against FakeKlaviyoApi, driven by the Deliverer on a fake clock
shared with the fake API."""

from __future__ import annotations

import json
import random
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from adapters.klaviyo.client import BULK_IMPORT, PROFILE_IMPORT, KlaviyoClient, klaviyo_throttle
from adapters.klaviyo.errors import classify_status
from connector.core.delivery import Deliverer
from connector.core.events import ProfileRef
from connector.core.pauses import Pauses
from connector.core.ports import ProfileWrite, WriteStatus
from connector.core.retry import RetryPolicy
from tests.fakes.clock import FakeClock
from tests.fakes.fake_klaviyo import FakeKlaviyoApi, error, throttled
from tests.fakes.http_fake import Fault


@dataclass
class Rig:
    api: FakeKlaviyoApi
    client: KlaviyoClient
    deliverer: Deliverer
    clock: FakeClock


def _rig(api: FakeKlaviyoApi, clock: FakeClock, bulk_threshold: int = 25) -> Rig:
    pauses = Pauses(clock)
    gate = klaviyo_throttle(pauses, clock.sleep, clock)
    client = KlaviyoClient("pk_test", base_url=api.base_url, gate=gate, sleep=clock.sleep,
                           timeout=0.5, bulk_threshold=bulk_threshold, poll_interval=1.0)
    deliverer = Deliverer(client, pauses, sleep=clock.sleep, random=random.Random(3).random,
                          policy=RetryPolicy(max_attempts=4, max_pause=600))
    return Rig(api, client, deliverer, clock)


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = FakeClock()
    with FakeKlaviyoApi(clock=clock) as api:
        yield _rig(api, clock)
        assert api.rejected == []  # every body the SDK sent matched Klaviyo's spec


def _writes(n: int) -> list[ProfileWrite]:
    return [ProfileWrite(f"k{i}", ProfileRef(email=f"p{i}@example.com"),
                         {"dcb_block": f"b{i}", "dcb_headline": "Hi"}) for i in range(n)]


def test_429_storm_writes_each_profile_once_and_never_calls_in_a_pause(rig: Rig) -> None:
    rig.api.script(*[Fault(reply=throttled(2), path="/api/profile-import") for _ in range(8)])
    outcomes = rig.deliverer.deliver(_writes(20))
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    assert rig.api.calls_during_pause == 0
    assert sorted(p.writes for p in rig.api.profiles.values()) == [1] * 20


def test_a_429_pauses_only_that_endpoint(rig: Rig) -> None:
    rig.api.script(Fault(reply=throttled(5), path="/api/profile-import"))
    (outcome,) = rig.client.write(_writes(1))
    assert outcome.throttled and outcome.pause_scope == PROFILE_IMPORT
    assert outcome.retry_after == 5.0
    assert rig.client.provision().problems == ()  # GET /api/profiles is not paused
    assert rig.clock.now == 1_800_000_000.0


def test_after_a_429_the_rest_of_the_batch_is_not_sent(rig: Rig) -> None:
    rig.api.script(Fault(reply=throttled(1), path="/api/profile-import"))
    outcomes = rig.client.write(_writes(5))
    assert all(o.throttled for o in outcomes)
    assert rig.api.calls(PROFILE_IMPORT) == 1


@pytest.mark.parametrize("fault", [Fault(delay=0.8), Fault(drop=True)], ids=["timeout", "drop"])
def test_timeouts_and_dropped_connections_are_retried(rig: Rig, fault: Fault) -> None:
    rig.api.script(fault)
    (outcome,) = rig.deliverer.deliver(_writes(1))
    assert outcome.status is WriteStatus.WRITTEN
    assert rig.api.calls(PROFILE_IMPORT) == 2


def test_the_sdk_does_not_retry_on_its_own(rig: Rig) -> None:
    rig.api.script(Fault(reply=error(503, "error", "Unavailable", "try later")))
    (outcome,) = rig.client.write(_writes(1))
    assert outcome.status is WriteStatus.RETRY
    assert len(rig.api.requests) == 1


def test_external_id_upserts(rig: Rig) -> None:
    (outcome,) = rig.client.write([ProfileWrite("k", ProfileRef(external_id="u-1"),
                                                {"dcb_block": "x"})])
    assert outcome.status is WriteStatus.WRITTEN
    assert rig.api.profiles[str(outcome.platform_id)].external_id == "u-1"


def test_large_batches_go_through_one_bulk_job(rig: Rig) -> None:
    outcomes = rig.client.write(_writes(40))
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    assert rig.api.calls(PROFILE_IMPORT) == 0
    assert rig.api.calls(BULK_IMPORT) == 3  # submit, "processing", "complete"
    assert len(rig.api.profiles) == 40


def test_a_job_with_failures_is_redone_profile_by_profile(rig: Rig) -> None:
    writes = _writes(30)
    writes[7] = ProfileWrite("bad", ProfileRef(email="broken"), {"dcb_block": "x"})
    outcomes = rig.client.write(writes)
    assert [o.key for o in outcomes if o.status is WriteStatus.FATAL] == ["bad"]
    assert sum(o.status is WriteStatus.WRITTEN for o in outcomes) == 29
    assert rig.api.calls(PROFILE_IMPORT) == 30


def test_a_429_on_the_bulk_job_is_throttled_for_every_profile(rig: Rig) -> None:
    rig.api.script(Fault(reply=throttled(3), path="/api/profile-bulk-import-jobs"))
    outcomes = rig.client.write(_writes(30))
    assert all(o.throttled and o.pause_scope == BULK_IMPORT for o in outcomes)
    outcomes = rig.deliverer.deliver(_writes(30))
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    assert rig.api.calls_during_pause == 0


def test_the_gate_keeps_to_the_fixed_windows() -> None:
    clock = FakeClock(0.0)
    with FakeKlaviyoApi(clock=clock, limits={PROFILE_IMPORT: (3, 10)}) as api:
        gate = klaviyo_throttle(Pauses(clock), clock.sleep, clock, scale=10 / 700)
        client = KlaviyoClient("pk_test", base_url=api.base_url, gate=gate, sleep=clock.sleep)
        outcomes = client.write(_writes(24))
        assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
        assert clock.now >= 120.0  # 24 calls at 10 a minute


def test_the_fake_validates_bodies_against_the_spec(rig: Rig) -> None:
    body = json.dumps({"data": {"type": "profiles", "attributes": {"email": 3}}}).encode()
    request = urllib.request.Request(
        rig.api.base_url + "/api/profile-import", data=body, method="POST",
        headers={"Authorization": "Klaviyo-API-Key pk_test", "revision": "2026-10-15",
                 "Content-Type": "application/vnd.api+json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    answer = json.loads(caught.value.read())
    assert caught.value.code == 400 and answer["errors"][0]["code"] == "invalid"
    rig.api.rejected.clear()


def test_a_wrong_key_is_reported_by_provisioning(rig: Rig) -> None:
    gate = klaviyo_throttle(Pauses(rig.clock), rig.clock.sleep, rig.clock)
    client = KlaviyoClient("pk_wrong", base_url=rig.api.base_url, gate=gate, sleep=rig.clock.sleep)
    (problem,) = client.provision().problems
    assert "401" in problem and "pk_wrong" not in problem


def test_classification() -> None:
    assert classify_status(404, {}, "{}", PROFILE_IMPORT).status is WriteStatus.SKIPPED
    assert classify_status(502, {}, "{}", PROFILE_IMPORT).status is WriteStatus.RETRY
    assert classify_status(429, {"RateLimit-Reset": "7"}, "{}", PROFILE_IMPORT).retry_after == 7
    body = json.dumps({"errors": [{"code": "invalid", "detail": "ada@example.com is taken, "
                                   "key pk_abcdef123456"}]})
    fatal = classify_status(409, {}, body, PROFILE_IMPORT)
    assert fatal.status is WriteStatus.FATAL
    assert "ada@example.com" not in fatal.reason and "pk_abcdef123456" not in fatal.reason
