"""HubSpotClient (real SDK) against FakeHubSpotApi, driven by the Deliverer on a fake clock
shared with the fake API, so waiting is instant and pauses are checked exactly."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.hubspot.errors import classify_status
from connector.core.delivery import Deliverer
from connector.core.events import ProfileRef
from connector.core.pauses import Pauses
from connector.core.ports import ProfileWrite, WriteStatus
from connector.core.retry import RetryPolicy
from connector.manifest import load_manifest
from tests.fakes.clock import FakeClock
from tests.fakes.fake_hubspot import FakeHubSpotApi, rate_limited
from tests.fakes.http_fake import Fault, Reply

SCHEMA = load_manifest().property_schema


@dataclass
class Rig:
    api: FakeHubSpotApi
    client: HubSpotClient
    deliverer: Deliverer
    clock: FakeClock


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = FakeClock()
    with FakeHubSpotApi(clock=clock, limit_per_10s=100) as api:
        api.define_dcb_properties()
        pauses = Pauses(clock)
        gate = hubspot_throttle(pauses, clock.sleep, clock)
        client = HubSpotClient("pat-test", base_url=api.base_url, gate=gate, timeout=0.5,
                               clock=clock, schema=SCHEMA)
        deliverer = Deliverer(client, pauses, sleep=clock.sleep,
                              random=random.Random(1).random,
                              policy=RetryPolicy(max_attempts=4, max_pause=600))
        yield Rig(api, client, deliverer, clock)


def _by_email(n: int, **properties: str) -> list[ProfileWrite]:
    return [ProfileWrite(f"k{i}", ProfileRef(email=f"c{i}@example.com"),
                         properties or {"dcb_block": f"b{i}"}) for i in range(n)]


def test_429_storm_writes_each_contact_once_and_never_calls_in_a_pause(rig: Rig) -> None:
    rig.api.script(*[Fault(reply=rate_limited("TEN_SECONDLY_ROLLING", 2)) for _ in range(6)])
    outcomes = rig.deliverer.deliver(_by_email(250))
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    assert rig.api.calls_during_pause == 0
    assert sorted(c.writes for c in rig.api.contacts.values()) == [1] * 250
    assert all(c.properties["dcb_block"] == f"b{c.properties['email'][1:].split('@')[0]}"
               for c in rig.api.contacts.values())


def test_a_207_retries_only_the_failed_records(rig: Rig) -> None:
    ids = [rig.api.add_contact(f"c{i}@example.com") for i in range(5)]
    rig.api.fail_records({ids[2]})
    writes = [ProfileWrite(f"k{i}", ProfileRef(hubspot_id=cid), {"dcb_block": "x"})
              for i, cid in enumerate(ids)]
    outcomes = rig.deliverer.deliver(writes)
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    first, second = rig.api.batch_calls()
    assert len(first.body["inputs"]) == 5
    assert [i["id"] for i in second.body["inputs"]] == [ids[2]]


def test_a_400_batch_is_split_until_the_bad_record_is_alone(rig: Rig) -> None:
    writes = _by_email(16)
    writes[11] = ProfileWrite("bad", ProfileRef(email="c11@example.com"), {"dcb_html": "x" * 70_000})
    outcomes = rig.client.write(writes)
    assert [o.key for o in outcomes if o.status is WriteStatus.FATAL] == ["bad"]
    assert sum(o.status is WriteStatus.WRITTEN for o in outcomes) == 15
    assert len(rig.api.batch_calls()) <= 1 + 2 * 4  # log2(16) levels, two halves each
    assert "x" * 50 not in outcomes[11].reason


def test_a_property_that_does_not_exist_is_fatal_with_the_platform_message(rig: Rig) -> None:
    (outcome,) = rig.client.write(_by_email(1, dcb_nope="1"))
    assert outcome.status is WriteStatus.FATAL
    assert "PROPERTY_DOESNT_EXIST" in outcome.reason and "dcb_nope" in outcome.reason


def test_properties_deleted_in_hubspot_are_created_again_and_the_batch_resent(rig: Rig) -> None:
    for name in [n for n in rig.api.definitions if n.startswith("dcb_")]:
        del rig.api.definitions[name]
    outcomes = rig.client.write(_by_email(30))
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    assert "dcb_block" in rig.api.definitions
    assert len(rig.api.batch_calls()) == 2  # the refused batch and its resend, no splitting


def test_a_2xx_with_neither_results_nor_errors_is_a_failure(rig: Rig) -> None:
    empty = {"status": "COMPLETE", "results": [], "startedAt": "2026-01-01T00:00:00Z",
             "completedAt": "2026-01-01T00:00:00Z"}
    rig.api.script(Fault(reply=Reply(200, empty)))
    (outcome,) = rig.client.write(_by_email(1))
    assert outcome.status is WriteStatus.RETRY and not outcome.throttled
    (again,) = rig.deliverer.deliver(_by_email(1))
    assert again.status is WriteStatus.WRITTEN


@pytest.mark.parametrize("fault", [Fault(delay=0.8), Fault(drop=True)], ids=["timeout", "drop"])
def test_timeouts_and_dropped_connections_are_retried(rig: Rig, fault: Fault) -> None:
    rig.api.script(fault)
    outcomes = rig.deliverer.deliver(_by_email(3))
    assert {o.status for o in outcomes} == {WriteStatus.WRITTEN}
    assert len(rig.api.batch_calls()) == 2


def test_the_sdk_does_not_retry_on_its_own(rig: Rig) -> None:
    rig.api.script(Fault(reply=Reply(503, {"status": "error", "message": "down"})))
    (outcome,) = rig.client.write(_by_email(1))
    assert outcome.status is WriteStatus.RETRY
    assert len(rig.api.requests) == 1


def test_a_daily_429_pauses_the_account_until_reset(rig: Rig) -> None:
    rig.api.daily_limit = 0
    (outcome,) = rig.deliverer.deliver(_by_email(1))
    assert outcome.status is WriteStatus.RETRY and outcome.throttled
    assert "DAILY" in outcome.reason
    assert len(rig.api.requests) == 1


def test_daily_reset_is_midnight_in_the_account_time_zone() -> None:
    now = datetime(2026, 11, 28, 20, 0, tzinfo=UTC).timestamp()  # 15:00 in New York
    body = rate_limited("DAILY").body
    outcome = classify_status(429, {}, body, now=now, tz=ZoneInfo("America/New_York"))
    assert outcome.retry_after == pytest.approx(9 * 3600)
    assert "2026-11-29T00:00:00-05:00" in outcome.reason


def test_locked_and_477_are_retried() -> None:
    locked = classify_status(423, {}, "{}", now=0.0, tz=UTC)
    assert locked.throttled and locked.retry_after == 2.0
    assert classify_status(477, {}, "{}", now=0.0, tz=UTC).status is WriteStatus.RETRY


def test_error_reasons_carry_no_token_or_email() -> None:
    body = {"status": "error", "message": "bad contact ada@example.com with Bearer pat-na1-abcdef123"}
    reason = classify_status(400, {}, body, now=0.0, tz=UTC).reason
    assert "ada@example.com" not in reason and "abcdef123" not in reason


def test_the_gate_keeps_the_client_inside_the_ten_second_window(rig: Rig) -> None:
    rig.api.limit_per_10s = 5
    gate = hubspot_throttle(Pauses(rig.clock), rig.clock.sleep, rig.clock, limit_per_10s=5)
    client = HubSpotClient("pat-test", base_url=rig.api.base_url, gate=gate, clock=rig.clock,
                           schema=SCHEMA)
    for i in range(12):
        (outcome,) = client.write([ProfileWrite("k", ProfileRef(email=f"w{i}@example.com"),
                                                {"dcb_block": "x"})])
        assert outcome.status is WriteStatus.WRITTEN
    assert rig.clock.now - 1_800_000_000.0 >= 20.0


def test_the_fake_enforces_the_rolling_window(rig: Rig) -> None:
    rig.api.limit_per_10s = 2
    gate = hubspot_throttle(Pauses(rig.clock), rig.clock.sleep, rig.clock, limit_per_10s=50)
    client = HubSpotClient("pat-test", base_url=rig.api.base_url, gate=gate, clock=rig.clock,
                           schema=SCHEMA)
    outcomes = [client.write(_by_email(1))[0] for _ in range(3)]
    assert [o.throttled for o in outcomes] == [False, False, True]


def test_provisioning_is_idempotent_and_reports_a_wrong_type() -> None:
    clock = FakeClock()
    with FakeHubSpotApi(clock=clock) as api:
        gate = hubspot_throttle(Pauses(clock), clock.sleep, clock)
        client = HubSpotClient("pat-test", base_url=api.base_url, gate=gate, clock=clock,
                               schema=SCHEMA)
        first = client.provision()
        assert "group dcb" in first.created and len(first.created) == 14
        assert api.definitions["dcb_html"]["fieldType"] == "html"
        assert api.definitions["dcb_body"]["fieldType"] == "textarea"
        api.definitions["dcb_coupon"]["fieldType"] = "number"
        again = client.provision()
        assert again.created == ()
        assert again.problems == ("dcb_coupon is string/number, expected string/text",)


def test_external_id_alone_cannot_be_written(rig: Rig) -> None:
    (outcome,) = rig.client.write([ProfileWrite("k", ProfileRef(external_id="u1"), {})])
    assert outcome.status is WriteStatus.FATAL
    assert rig.api.requests == []
