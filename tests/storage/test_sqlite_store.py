from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.storage.sqlite import LEASE_SECONDS, SqlitePipelineStore
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
    return PendingWrite("default", "hubspot", "email:a@x.y", {"email": "a@x.y"}, props)


def test_pending_writes_coalesce_and_settle_by_version(store: SqlitePipelineStore) -> None:
    update = ProfileUpdate("default", "email:a@x.y", {"n": 1}, [write({"dcb_block": "one"})],
                           {"email": "a@x.y"})  # fmt: skip
    store.commit([update], [], T)
    in_flight = store.take_due("default", "hubspot", 10, T)
    assert [w.properties["dcb_block"] for w in in_flight] == ["one"]
    newer = ProfileUpdate("default", "email:a@x.y", {"n": 2}, [write({"dcb_block": "two"})])
    store.commit([newer], [], T + 1)
    store.settle([Settlement(in_flight[0], "written")], T + 2)
    assert store.last_written("default", "hubspot", "email:a@x.y") == {"dcb_block": "one"}
    waiting = store.take_due("default", "hubspot", 10, T + 2)
    assert [w.properties["dcb_block"] for w in waiting] == ["two"]  # the newer one survived
    store.settle([Settlement(waiting[0], "written")], T + 3)
    assert not store.is_pending("default", "hubspot", "email:a@x.y")
    assert store.resolve_profile("default", {"email": "a@x.y"}) == "email:a@x.y"
    assert store.load_context("default", "email:a@x.y") == {"n": 2}


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
