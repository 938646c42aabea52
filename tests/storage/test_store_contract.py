"""The `PipelineStore` contract, run over the embedded SQLite store and Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from connector.core.pauses import Pauses
from connector.core.properties import fingerprint
from connector.core.storage import (
    Backpressure,
    Inbound,
    PendingWrite,
    ProfileUpdate,
    Settlement,
    Timer,
)
from connector.runtime_report import RuntimeReport
from tests.storage.conftest import Store

T = 1_800_000_000.0


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store(queue_limit=50)


def inbound(key: str, account: str = "default") -> Inbound:
    event = {"type": "cart_updated", "event_id": key, "profile": {"email": f"{key}@x.y"}}
    return Inbound(account, key, event, ("hubspot",))


def test_enqueue_drops_duplicates_per_account(store: Store) -> None:
    first = store.enqueue([inbound("a"), inbound("b"), inbound("a")], T)
    assert (first.accepted, first.duplicates) == (2, 1)
    again = store.enqueue([inbound("a"), inbound("a", account="other")], T + 1)
    assert (again.accepted, again.duplicates) == (1, 1)
    assert store.depth() == 3


def test_claimed_events_go_to_one_consumer_and_commit_settles_them(store: Store) -> None:
    store.enqueue([inbound("a"), inbound("b")], T)
    first = store.claim("w1", 10, T)
    assert [c.event["event_id"] for c in first] == ["a", "b"]
    assert [(c.account, c.platforms, c.attempts) for c in first] == [
        ("default", ("hubspot",), 1)] * 2  # fmt: skip
    assert store.claim("w2", 10, T + 1) == []
    store.commit([], [c.id for c in first], T + 2)
    assert store.depth() == 0
    assert store.claim("w3", 10, T + 999) == []


def test_claim_takes_at_most_the_limit_oldest_first(store: Store) -> None:
    store.enqueue([inbound(str(i)) for i in range(5)], T)
    first = store.claim("w", 2, T)
    assert [c.event["event_id"] for c in first] == ["0", "1"]
    store.commit([], [c.id for c in first], T)
    assert [c.event["event_id"] for c in store.claim("w", 10, T)] == ["2", "3", "4"]


def test_backpressure_over_the_limit(store: Store) -> None:
    store.enqueue([inbound(str(i)) for i in range(50)], T)
    with pytest.raises(Backpressure) as raised:
        store.enqueue([inbound("more")], T)
    assert (raised.value.depth, raised.value.limit) == (50, 50)


def test_enqueue_serves_many_threads(store: Store) -> None:
    results = []

    def send(i: int) -> None:
        results.append(store.enqueue([inbound(f"t{i}")], T))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.accepted for r in results) == 40
    assert len(store.claim("w", 100, T)) == 40


def write(props: dict[str, str]) -> PendingWrite:
    return PendingWrite(
        "default",
        "hubspot",
        "email:a@x.y",
        {"email": "a@x.y"},
        props,
        fingerprint=fingerprint(props),
    )


def decide(store: Store, block: str, at: float = T) -> None:
    update = ProfileUpdate(
        "default",
        "email:a@x.y",
        {"block": block},
        [write({"dcb_block": block})],
        {"email": "a@x.y"},
    )
    store.commit([update], [], at)


def waiting(store: Store) -> list[str]:
    return [w.properties["dcb_block"] for w in store.take_due("default", "hubspot", 10, 1e12)]


def send(store: Store) -> PendingWrite:
    [pending] = store.take_due("default", "hubspot", 10, 1e12)
    assert store.mark_sending([pending]) == [pending]
    return pending


def test_a_newer_decision_replaces_the_waiting_one(store: Store) -> None:
    decide(store, "one")
    decide(store, "two")
    assert waiting(store) == ["two"]
    [pending] = store.take_due("default", "hubspot", 10, 1e12)
    assert (pending.version, pending.first_queued_at, pending.identifiers) == (
        2, T, {"email": "a@x.y"})  # fmt: skip
    assert store.load_context("default", "email:a@x.y") == {"block": "two"}
    assert store.resolve_profile("default", {"email": "a@x.y"}) == "email:a@x.y"
    assert store.resolve_profile("default", {"email": "b@x.y"}) is None


def test_a_decision_in_flight_is_followed_by_the_newer_one(store: Store) -> None:
    decide(store, "one")
    in_flight = send(store)
    decide(store, "two")
    store.settle([Settlement(in_flight, "written")], T + 2)
    assert waiting(store) == ["two"]  # the newer one survived the older one's settlement
    store.settle([Settlement(send(store), "written")], T + 3)
    assert waiting(store) == []


def test_a_write_cancelled_after_it_was_read_is_not_sent(store: Store) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "two", T + 1)
    [read] = store.take_due("default", "hubspot", 10, 1e12)
    decide(store, "one", T + 2)  # back to what the platform has, before "two" was marked
    assert store.mark_sending([read]) == []  # so the stale "two" never goes out
    decide(store, "three", T + 3)
    [replaced] = store.take_due("default", "hubspot", 10, 1e12)
    decide(store, "four", T + 4)
    assert store.mark_sending([replaced]) == []
    assert waiting(store) == ["four"]


def test_what_the_platform_has_is_not_written_again(store: Store) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "one", T + 1)
    assert waiting(store) == []
    decide(store, "two", T + 2)
    decide(store, "one", T + 3)  # back to what the platform has: the waiting write goes
    assert waiting(store) == []


def test_going_back_while_a_write_is_in_flight_writes_again(store: Store) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "two", T + 1)
    in_flight = send(store)
    decide(store, "one", T + 2)  # "two" may land: "one" must follow it
    store.settle([Settlement(in_flight, "written")], T + 3)
    assert waiting(store) == ["one"]


def test_retry_waits_and_fatal_goes_to_the_dead_letters(store: Store) -> None:
    store.commit([ProfileUpdate("default", "k", {}, [write({"dcb_block": "x"})])], [], T)
    [pending] = store.take_due("default", "hubspot", 10, T)
    assert store.oldest_due("default", "hubspot", T) == T
    store.settle([Settlement(pending, "retry", "429", retry_at=T + 30)], T)
    assert store.take_due("default", "hubspot", 10, T + 10) == []
    assert store.oldest_due("default", "hubspot", T + 10) is None
    assert store.take_due("default", "hubspot", 10, T + 29.9) == []
    [again] = store.take_due("default", "hubspot", 10, T + 31)
    assert again.attempts == 1
    store.settle([Settlement(again, "fatal", "400 PROPERTY_DOESNT_EXIST")], T + 32)
    [letter] = store.dead_letters()
    assert (letter.reason, letter.attempts, letter.properties, letter.failed_at) == (
        "400 PROPERTY_DOESNT_EXIST", 2, {"dcb_block": "x"}, T + 32)  # fmt: skip
    assert store.status(T + 33)["accounts"]["default"]["dead_letters"] == 1
    assert store.remove_dead_letters([letter.id]) == [letter]
    assert store.dead_letters() == []


def test_remove_dead_letters_without_ids_removes_all(store: Store) -> None:
    for block in ("x", "y"):
        w = PendingWrite("default", "hubspot", block, {"email": "a@x.y"}, {"dcb_block": block})
        store.settle([Settlement(w, "fatal", "bad")], T)
    assert store.remove_dead_letters(["999"]) == []
    assert [d.profile_key for d in store.remove_dead_letters([])] == ["x", "y"]
    assert store.dead_letters() == []


def test_skipped_drops_the_write(store: Store) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "skipped", "gone")], T)
    assert waiting(store) == []
    assert store.dead_letters() == []


def test_a_waiting_write_equal_to_what_just_landed_is_dropped(store: Store) -> None:
    decide(store, "one")
    in_flight = send(store)
    decide(store, "two", T + 1)
    decide(store, "one", T + 2)  # back to the set in flight: it waits, in case that call fails
    assert waiting(store) == ["one"]
    store.settle([Settlement(in_flight, "written")], T + 3)
    assert waiting(store) == []  # it landed: nothing left to send


def test_erase_forgets_the_profile(store: Store) -> None:
    decide(store, "one")
    store.erase("default", "email:a@x.y")
    assert store.load_context("default", "email:a@x.y") is None
    assert store.resolve_profile("default", {"email": "a@x.y"}) is None
    assert waiting(store) == []
    decide(store, "one", T + 1)  # nothing remembered as written: it goes out again
    assert waiting(store) == ["one"]


def test_status_reports_queue_pending_and_dead_letters(store: Store) -> None:
    store.enqueue([inbound("a"), inbound("b", account="shop2")], T)
    decide(store, "one")
    report = store.status(T + 5)
    assert report["accounts"]["default"]["queued"] == 1
    assert report["accounts"]["default"]["oldest_queued_seconds"] == 5.0
    assert report["accounts"]["default"]["pending"] == {
        "hubspot": {"writes": 1, "lag_seconds": 5.0, "retrying": 0}}  # fmt: skip
    assert report["accounts"]["shop2"]["queued"] == 1


def test_a_published_runtime_report_shows_in_status(store: Store) -> None:
    report = RuntimeReport("default", {"hubspot": Pauses(lambda: T)}, lambda: T)
    report.settled([Settlement(write({"dcb_block": "x"}), "retry", "429 TEN_SECONDLY_ROLLING")])
    store.save_runtime("default", report.snapshot())
    account = store.status(T + 1)["accounts"]["default"]
    assert account["last_errors"]["hubspot"].startswith("429 TEN_SECONDLY_ROLLING (retry,")
    assert account["paused"] == {}


def test_the_context_version_rises_with_every_change_of_the_context_and_erase(
    store: Store,
) -> None:
    key = "email:a@x.y"
    assert store.context_version("default", key) == 0  # never seen
    decide(store, "one")
    first = store.context_version("default", key)
    assert first > 0
    decide(store, "one", T + 1)  # the same context again: nothing changed
    assert store.context_version("default", key) == first
    decide(store, "two", T + 2)
    second = store.context_version("default", key)
    assert second > first
    store.erase("default", key)
    erased = store.context_version("default", key)
    assert erased > second  # a cached decision for the erased context is stale at once
    decide(store, "one", T + 3)  # a context like the first again gets a new version
    assert store.context_version("default", key) > erased


def test_a_profile_s_context_version_is_its_own(store: Store) -> None:
    decide(store, "one")
    other = ProfileUpdate("default", "email:b@x.y", {"block": "x"}, [], {"email": "b@x.y"})
    before = store.context_version("default", "email:a@x.y")
    store.commit([other], [], T + 1)
    assert store.context_version("default", "email:a@x.y") == before
    assert store.context_version("default", "email:b@x.y") > 0
    assert store.context_version("shop2", "email:a@x.y") == 0


def fill(store: Store, account: str) -> None:
    """One of everything an account can hold: a queued and a held event, a context with
    identity links, a pending and a written write, a timer, a dead letter, a report."""
    store.enqueue([inbound(f"{account}-q", account), inbound(f"{account}-h", account)], T)
    key = f"email:{account}@x.y"
    props = {"dcb_block": account}
    pending = PendingWrite(account, "hubspot", key, {"email": f"{account}@x.y"}, props,
                           fingerprint=fingerprint(props))  # fmt: skip
    store.commit([ProfileUpdate(account, key, {"block": account}, [pending],
                                {"email": f"{account}@x.y"})], [], T)  # fmt: skip
    [due] = store.take_due(account, "hubspot", 10, T)
    store.settle([Settlement(due, "written")], T)
    store.commit([ProfileUpdate(account, key, {"block": "next"}, [replace(pending, properties={
        "dcb_block": "next"}, fingerprint=fingerprint({"dcb_block": "next"}))])], [], T)  # fmt: skip
    event = {"type": "cart_abandoned", "event_id": f"{account}-t", "profile": {"email": "x"}}
    store.set_timer(account, key, Timer(T + 3600, f"{account}-t", event, ("hubspot",)))
    dead = PendingWrite(account, "klaviyo", key, {"email": f"{account}@x.y"}, props)
    store.settle([Settlement(dead, "fatal", "400")], T)
    store.save_runtime(account, {"account": account, "reported_at": T, "paused": {}})


def test_erase_account_forgets_that_account_only(store: Store) -> None:
    fill(store, "shop1")
    fill(store, "shop2")
    held = store.claim("w", 1, T)  # shop1's first event, held by a worker
    assert [c.account for c in held] == ["shop1"]
    gone = store.erase_account("shop1")
    assert gone == {"events": 2, "profiles": 1, "pending": 1, "timers": 1, "dead_letters": 1}
    assert store.load_context("shop1", "email:shop1@x.y") is None
    assert store.resolve_profile("shop1", {"email": "shop1@x.y"}) is None
    assert store.take_due("shop1", "hubspot", 10, 1e12) == []
    assert [d.account for d in store.dead_letters()] == ["shop2"]
    assert store.fire_timers(T + 7200) == 1  # shop2's timer only
    assert {c.account for c in store.claim("w2", 100, T + 7200)} == {"shop2"}
    assert "shop1" not in store.status(T)["accounts"]
    assert store.enqueue([inbound("shop1-q", "shop1")], T).accepted == 1  # dedup forgotten
    assert store.enqueue([inbound("shop2-q", "shop2")], T).duplicates == 1
    assert store.load_context("shop2", "email:shop2@x.y") == {"block": "next"}
    assert [w.properties["dcb_block"] for w in store.take_due("shop2", "hubspot", 10, 1e12)] == [
        "next"]  # fmt: skip
