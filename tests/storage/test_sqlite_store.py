from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.storage.sqlite import LEASE_SECONDS, SqlitePipelineStore
from connector.core.properties import fingerprint
from connector.core.storage import Backpressure, Inbound, PendingWrite, ProfileUpdate, Settlement

T = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlitePipelineStore]:
    s = SqlitePipelineStore(tmp_path / "dcb.sqlite3", queue_limit=50)
    yield s
    s.close()


def inbound(key: str, account: str = "default") -> Inbound:
    event = {"type": "cart_updated", "event_id": key, "profile": {"email": f"{key}@x.y"}}
    return Inbound(account, key, event, ("hubspot",))


def test_enqueue_drops_duplicates_per_account(store: SqlitePipelineStore) -> None:
    first = store.enqueue([inbound("a"), inbound("b"), inbound("a")], T)
    assert (first.accepted, first.duplicates) == (2, 1)
    again = store.enqueue([inbound("a"), inbound("a", account="other")], T + 1)
    assert (again.accepted, again.duplicates) == (1, 1)


def test_dedup_keys_expire_after_the_ttl(store: SqlitePipelineStore) -> None:
    store.enqueue([inbound("a")], T)
    later = T + 8 * 86400
    assert store.enqueue([inbound("a")], later).accepted == 1
    assert store.expire_dedup(later + 8 * 86400) == 1


def test_claims_are_leased_and_reclaimed_after_the_lease(store: SqlitePipelineStore) -> None:
    store.enqueue([inbound("a"), inbound("b")], T)
    first = store.claim("w1", 10, T)
    assert [c.event["event_id"] for c in first] == ["a", "b"]
    assert store.claim("w2", 10, T + 1) == []
    again = store.claim("w2", 10, T + LEASE_SECONDS + 1)
    assert [c.attempts for c in again] == [2, 2]
    store.commit([], [c.id for c in again], T + 40)
    assert store.claim("w3", 10, T + 999) == []


def test_release_leases_makes_everything_claimable(store: SqlitePipelineStore) -> None:
    store.enqueue([inbound("a")], T)
    store.claim("dead", 10, T)
    assert store.release_leases() == 1
    assert len(store.claim("w", 10, T)) == 1


def test_backpressure_over_the_limit(store: SqlitePipelineStore) -> None:
    store.enqueue([inbound(str(i)) for i in range(50)], T)
    with pytest.raises(Backpressure):
        store.enqueue([inbound("more")], T)


def test_group_commit_serves_many_threads(store: SqlitePipelineStore) -> None:
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


def decide(store: SqlitePipelineStore, block: str, at: float = T) -> None:
    update = ProfileUpdate(
        "default",
        "email:a@x.y",
        {"block": block},
        [write({"dcb_block": block})],
        {"email": "a@x.y"},
    )
    store.commit([update], [], at)


def waiting(store: SqlitePipelineStore) -> list[str]:
    return [w.properties["dcb_block"] for w in store.take_due("default", "hubspot", 10, 1e12)]


def send(store: SqlitePipelineStore) -> PendingWrite:
    [pending] = store.take_due("default", "hubspot", 10, 1e12)
    store.mark_sending([pending])
    return pending


def test_a_newer_decision_replaces_the_waiting_one(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    decide(store, "two")
    assert waiting(store) == ["two"]
    assert store.load_context("default", "email:a@x.y") == {"block": "two"}
    assert store.resolve_profile("default", {"email": "a@x.y"}) == "email:a@x.y"


def test_a_decision_in_flight_is_followed_by_the_newer_one(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    in_flight = send(store)
    decide(store, "two")
    store.settle([Settlement(in_flight, "written")], T + 2)
    assert waiting(store) == ["two"]  # the newer one survived the older one's settlement
    store.settle([Settlement(send(store), "written")], T + 3)
    assert waiting(store) == []


def test_what_the_platform_has_is_not_written_again(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "one", T + 1)
    assert waiting(store) == []
    decide(store, "two", T + 2)
    decide(store, "one", T + 3)  # back to what the platform has: the waiting write goes
    assert waiting(store) == []


def test_going_back_while_a_write_is_in_flight_writes_again(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "two", T + 1)
    in_flight = send(store)
    decide(store, "one", T + 2)  # "two" may land: "one" must follow it
    store.settle([Settlement(in_flight, "written")], T + 3)
    assert waiting(store) == ["one"]


def test_a_restart_forgets_what_was_in_flight(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "two", T + 1)
    send(store)
    store.release_leases()  # the process died mid-call; "two" stays pending and is resent
    decide(store, "one", T + 2)
    assert waiting(store) == []


def test_retry_waits_and_fatal_goes_to_the_dead_letters(store: SqlitePipelineStore) -> None:
    store.commit([ProfileUpdate("default", "k", {}, [write({"dcb_block": "x"})])], [], T)
    [pending] = store.take_due("default", "hubspot", 10, T)
    store.settle([Settlement(pending, "retry", "429", retry_at=T + 30)], T)
    assert store.take_due("default", "hubspot", 10, T + 10) == []
    [again] = store.take_due("default", "hubspot", 10, T + 31)
    assert again.attempts == 1
    store.settle([Settlement(again, "fatal", "400 PROPERTY_DOESNT_EXIST")], T + 32)
    [letter] = store.dead_letters()
    assert (letter.reason, letter.attempts, letter.properties) == (
        "400 PROPERTY_DOESNT_EXIST", 2, {"dcb_block": "x"})  # fmt: skip
    assert store.status(T + 33)["accounts"]["default"]["dead_letters"] == 1
    assert store.remove_dead_letters([letter.id]) == [letter]
    assert store.dead_letters() == []


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "dcb.sqlite3"
    first = SqlitePipelineStore(path)
    first.enqueue([inbound("a")], T)
    first.close()
    second = SqlitePipelineStore(path)
    assert [c.event["event_id"] for c in second.claim("w", 10, T)] == ["a"]
    assert second.enqueue([inbound("a")], T).duplicates == 1
    second.close()


def test_a_waiting_write_equal_to_what_just_landed_is_dropped(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    in_flight = send(store)
    decide(store, "two", T + 1)
    decide(store, "one", T + 2)  # back to the set in flight: it waits, in case that call fails
    assert waiting(store) == ["one"]
    store.settle([Settlement(in_flight, "written")], T + 3)
    assert waiting(store) == []  # it landed: nothing left to send
