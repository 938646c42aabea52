"""Late and missing data, end to end below the web app: the processor and dispatcher on each
store, the real HubSpot and Klaviyo SDKs against the fake platforms (scripted slowness and
outages), a rule that `requires` the shopper's city."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from blocks.loading import load_library
from connector.core.dispatch import Dispatcher
from connector.core.late_data import FETCH_TIMEOUT, LateData
from connector.core.pauses import Pauses
from connector.core.ports import FetchedProfile
from connector.core.processing import Processor
from connector.core.rules import load_ruleset
from connector.core.storage import Inbound
from connector.manifest import load_manifest
from tests.fakes.fake_hubspot import FakeHubSpotApi, hs_error
from tests.fakes.fake_klaviyo import FakeKlaviyoApi
from tests.fakes.http_fake import Fault
from tests.storage.conftest import Store

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ACCOUNT = "default"
RULES = """\
ruleset: late
version: 1
rules:
  - id: premium
    when: {event.cart_value: {gt: 150}}
    block: personalized_offer
  - id: nyc
    when: {profile.city: {in: [New York, NYC]}}
    requires: [profile.city]
    block: localized_offer
    params: {discount_percent: 10, city: NYC}
fallback: {block: we_noticed}
delayed_data: {block: back_soon}
"""


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()


@dataclass
class Rig:
    store: Store
    hubspot: FakeHubSpotApi
    client: HubSpotClient
    processor: Processor
    late: LateData
    dispatcher: Dispatcher
    clock: Clock
    events: int = 0
    sent: list[str] = field(default_factory=list)

    def event(self, kind: str = "cart_updated", **properties: Any) -> None:
        """A first-party event for the contact (by HubSpot id), decided for HubSpot."""
        self.events += 1
        body = {
            "type": kind,
            "event_id": f"e{self.events}",
            "occurred_at": self.clock.now.isoformat(),
            "profile": {"email": "ada@example.com", "hubspot_id": self.contact},
            "properties": properties or {"cart_value": 50.0},
        }
        self.store.enqueue([Inbound(ACCOUNT, f"e{self.events}", body, ("hubspot",))],
                           self.clock.epoch())

    @property
    def contact(self) -> str:
        found = self.hubspot.by_email("ada@example.com")
        assert found is not None
        return found.id

    def process(self) -> int:
        return self.processor.run_once()

    def flush(self) -> list[str]:
        """Send what waits; the blocks the contact has been written, in order."""
        self.dispatcher.run_once(drain=True)
        blocks = [i["properties"]["dcb_block"] for r in self.hubspot.batch_calls()
                  for i in r.body["inputs"]]
        return blocks

    def until_processed(self, timeout: float = 5.0) -> None:
        """Process until something queued comes in (a late answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process():
                return
            time.sleep(0.02)
        raise AssertionError("nothing arrived")

    def reads(self) -> int:
        return len(self.hubspot.reads())


def _rig(store: Store, hubspot: FakeHubSpotApi, submit: Callable[..., Future[FetchedProfile]],
         budget: float = 0.08, rules: str = RULES) -> Rig:
    clock = Clock()
    library = load_library()
    ruleset = load_ruleset(rules, "late.yaml", library.catalogue)
    gate = hubspot_throttle(Pauses(time.time), time.sleep, time.time)
    client = HubSpotClient("pat-test", base_url=hubspot.base_url, gate=gate, timeout=5.0,
                           schema=load_manifest().property_schema)
    late = LateData({"default": {"hubspot": client}}, submit, store, clock, budget=budget,
                    ttl=timedelta(minutes=10))
    processor = Processor(store, lambda _a: ruleset, library.renderer, clock, late_data=late)
    dispatcher = Dispatcher(store, ACCOUNT, "hubspot", client.write, 100, clock.epoch,
                            flush_seconds=0)
    return Rig(store, hubspot, client, processor, late, dispatcher, clock)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def rig(store: Store, executor: ThreadPoolExecutor) -> Iterator[Rig]:
    with FakeHubSpotApi() as hubspot:
        hubspot.define_dcb_properties()
        hubspot.add_contact("ada@example.com", city="New York")
        yield _rig(store, hubspot, executor.submit)


def test_an_answer_within_the_budget_writes_only_the_real_block(rig: Rig) -> None:
    rig.event()
    rig.process()
    assert rig.flush() == ["localized_offer"]
    assert rig.reads() == 1
    read = rig.hubspot.reads()[0]
    assert read.path.endswith("/" + rig.contact) and "city" in read.query["properties"][0]


def test_a_slow_answer_writes_the_delayed_block_first_then_the_real_one(rig: Rig) -> None:
    rig.hubspot.script(Fault(delay=0.5, method="GET"))
    rig.event()
    rig.process()
    assert rig.flush() == ["back_soon"]  # the budget passed: the delayed block went out
    rig.until_processed()  # the answer came back through the queue
    assert rig.flush() == ["back_soon", "localized_offer"]


def test_a_slow_answer_before_the_flush_leaves_only_the_real_block(rig: Rig) -> None:
    rig.hubspot.script(Fault(delay=0.3, method="GET"))
    rig.event()
    rig.process()  # back_soon waits in the pending writes
    rig.until_processed()  # replaced before the batch was sent
    assert rig.flush() == ["localized_offer"]


def test_platform_down_keeps_the_last_block_and_retries_until_the_real_one(rig: Rig) -> None:
    rig.event(cart_value=200.0)  # premium wins: no fetch needed
    rig.process()
    assert rig.flush() == ["personalized_offer"] and rig.reads() == 0
    rig.hubspot.script(*[Fault(reply=hs_error(503, "SERVICE_UNAVAILABLE", "down"),
                               method="GET") for _ in range(2)])
    rig.event(cart_value=50.0)  # nyc could win and needs the city
    rig.process()
    assert rig.flush() == ["personalized_offer"]  # no delayed block over the good one
    for wait in (2.5, 4.5):  # retried with backoff: down once more, then up
        rig.clock.now += timedelta(seconds=wait)
        assert rig.store.fire_timers(rig.clock.epoch()) == 1
        rig.process()
    assert rig.reads() == 3
    assert rig.flush() == ["personalized_offer", "localized_offer"]
    rig.clock.now += timedelta(minutes=20)  # (the cart's abandonment timer is at 30)
    assert rig.store.fire_timers(rig.clock.epoch()) == 0  # no retry left armed


def test_platform_down_with_no_block_yet_writes_the_delayed_one(rig: Rig) -> None:
    rig.hubspot.script(Fault(reply=hs_error(502, "BAD_GATEWAY", "down"), method="GET"))
    rig.event()
    rig.process()
    assert rig.flush() == ["back_soon"]
    rig.clock.now += timedelta(seconds=3)
    assert rig.store.fire_timers(rig.clock.epoch()) == 1
    rig.process()
    assert rig.flush() == ["back_soon", "localized_offer"]


def test_a_crash_before_the_answer_arrives_never_leaves_the_delayed_block(
    store: Store, executor: ThreadPoolExecutor
) -> None:
    with FakeHubSpotApi() as hubspot:
        hubspot.define_dcb_properties()
        hubspot.add_contact("ada@example.com", city="NYC")
        lost: Future[FetchedProfile] = Future()  # the process died with the fetch in flight
        crashed = _rig(store, hubspot, lambda _call: lost)
        crashed.event()
        crashed.process()
        assert crashed.flush() == ["back_soon"]
        restarted = _rig(store, hubspot, executor.submit)  # a new process, same store
        restarted.clock.now += timedelta(seconds=FETCH_TIMEOUT + 1)
        assert store.fire_timers(restarted.clock.epoch()) == 1
        restarted.process()
        assert restarted.flush() == ["back_soon", "localized_offer"]


def test_fetched_fields_are_reused_until_a_profile_change_or_the_ttl(rig: Rig) -> None:
    rig.event()
    rig.process()
    assert rig.reads() == 1
    rig.clock.now += timedelta(minutes=1)
    rig.event(cart_value=60.0)
    rig.process()
    assert rig.reads() == 1  # cache hit: the city is known and fresh
    rig.clock.now += timedelta(minutes=1)
    rig.event("profile_updated", firstname="Ada")  # the platform says the contact changed
    rig.process()
    assert rig.reads() == 2  # stale: read again
    rig.clock.now += timedelta(minutes=11)  # past the TTL
    rig.event(cart_value=70.0)
    rig.process()
    assert rig.reads() == 3
    assert rig.flush() == ["localized_offer"]


def test_an_event_carrying_the_field_needs_no_fetch(rig: Rig) -> None:
    rig.event()
    rig.process()
    rig.event("profile_updated", city="Boston")  # the event's own value wins, no read
    rig.process()
    assert rig.reads() == 1
    assert rig.flush() == ["we_noticed"]


def test_a_contact_unknown_to_the_platform_is_decided_without_the_field(rig: Rig) -> None:
    rig.hubspot.contacts.clear()
    rig.hubspot.add_contact("other@example.com")
    body = {"type": "cart_updated", "event_id": "x1", "occurred_at": START.isoformat(),
            "profile": {"email": "ada@example.com"}, "properties": {"cart_value": 50.0}}
    rig.store.enqueue([Inbound(ACCOUNT, "x1", body, ("hubspot",))], rig.clock.epoch())
    rig.process()
    assert rig.hubspot.reads()[0].query["idProperty"] == ["email"]  # by email: 404
    assert rig.flush() == ["we_noticed"]  # looked, none: the nyc rule does not match
    assert rig.store.fire_timers(rig.clock.epoch() + 600) == 0  # an answer: no retry


def test_klaviyo_profiles_are_read_by_email(store: Store, executor: ThreadPoolExecutor) -> None:
    with FakeKlaviyoApi() as klaviyo:
        klaviyo.add_profile("ada@example.com", location={"city": "New York"})
        clock = Clock()
        library = load_library()
        ruleset = load_ruleset(RULES, "late.yaml", library.catalogue)
        gate = klaviyo_throttle(Pauses(time.time), time.sleep, time.time)
        client = KlaviyoClient("pk_test", base_url=klaviyo.base_url, gate=gate, sleep=time.sleep)
        late = LateData({"default": {"klaviyo": client}}, executor.submit, store, clock, budget=0.5)
        processor = Processor(store, lambda _a: ruleset, library.renderer, clock, late_data=late)
        body = {"type": "cart_updated", "event_id": "k1", "occurred_at": START.isoformat(),
                "profile": {"email": "ada@example.com"}, "properties": {"cart_value": 50.0}}
        store.enqueue([Inbound(ACCOUNT, "k1", body, ("klaviyo",))], clock.epoch())
        processor.run_once()
        Dispatcher(store, ACCOUNT, "klaviyo", client.write, 100, clock.epoch,
                   flush_seconds=0).run_once(drain=True)
        profile = klaviyo.by_email("ada@example.com")
        assert profile is not None and profile.properties["dcb_block"] == "localized_offer"
        assert klaviyo.reads()[0].query["filter"] == ['equals(email,"ada@example.com")']


def test_a_field_a_later_rule_requires_is_read_in_a_second_round(
    store: Store, executor: ThreadPoolExecutor
) -> None:
    tiers = RULES.replace("fallback:", """  - id: gold
    when: {profile.loyalty_tier: gold}
    requires: [profile.loyalty_tier]
    block: loyalty_reward
fallback:""")
    with FakeHubSpotApi() as hubspot:
        hubspot.define_dcb_properties()
        hubspot.define_property("loyalty_tier", "text")
        hubspot.add_contact("ada@example.com", city="Boston", loyalty_tier="gold")
        rig = _rig(store, hubspot, executor.submit, budget=2.0, rules=tiers)
        rig.event()
        rig.process()
        asked = [r.query["properties"][0] for r in hubspot.reads()]
        assert len(asked) == 2 and "loyalty_tier" in asked[1]
        assert rig.flush() == ["loyalty_reward"]
