"""What only the Redis store does: per-profile locks across consumers, redelivery of a
dead consumer's events, fenced commits, the dispatch lease, TTL dedup, health warnings."""

from __future__ import annotations

import time

import pytest
import redis

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_store import ClaimLost, RedisPipelineStore
from connector.core.intake import ERASE
from connector.core.storage import Inbound, ProfileUpdate, Settlement
from tests.storage.test_store_contract import T, decide, inbound, send, waiting


def make(client: redis.Redis, **options: float) -> RedisPipelineStore:
    return RedisPipelineStore(client, queue_limit=1000, **options)  # type: ignore[arg-type]


def event(key: str, **ids: str) -> Inbound:
    return Inbound("default", key, {"type": "x", "event_id": key, "profile": ids}, ("hubspot",))


def ids_of(claimed: list) -> list[str]:  # type: ignore[type-arg]
    return [c.event["event_id"] for c in claimed]


def test_dedup_keys_carry_the_seven_day_ttl(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    store.enqueue([inbound("a")], T)
    ttl = redis_client.ttl(RedisKeys().dedup("default", "a"))
    assert 7 * 86400 - 5 <= int(ttl) <= 7 * 86400  # type: ignore[arg-type]
    assert store.expire_dedup(T) == 0


def test_a_profile_held_by_one_consumer_waits_for_its_commit(
    redis_client: redis.Redis,
) -> None:
    store = make(redis_client)
    store.enqueue([event("1", email="a@x"), event("2", email="b@x")], T)
    first = store.claim("w1", 10, T)
    store.enqueue([event("3", email="a@x"), event("4", email="c@x")], T)
    assert ids_of(store.claim("w2", 10, T)) == ["4"]  # "3" waits for w1's "1"
    assert redis_client.hget(RedisKeys().lock("default", "email:a@x"), "owner") == b"w1"
    store.enqueue([event("5", email="a@x")], T)
    assert store.claim("w3", 10, T) == []  # "5" queues behind "3", never ahead of it
    store.commit([], [c.id for c in first], T)
    assert ids_of(store.claim("w3", 10, T)) == ["3", "5"]


def test_a_linked_identifier_locks_its_profile(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    update = ProfileUpdate("default", "email:a@x", {"n": 1}, identifiers={"hubspot_id": "7"})
    store.commit([update], [], T)
    store.enqueue([event("1", email="a@x")], T)
    held = store.claim("w1", 10, T)
    store.enqueue([event("2", hubspot_id="7")], T)  # other identifier, same profile
    assert store.claim("w2", 10, T) == []
    store.commit([], [c.id for c in held], T)
    assert ids_of(store.claim("w2", 10, T)) == ["2"]


def test_an_event_carrying_two_unlinked_identifiers_waits_for_both(
    redis_client: redis.Redis,
) -> None:
    store = make(redis_client)
    store.enqueue([event("1", email="a@x"), event("2", hubspot_id="7")], T)
    first = store.claim("w1", 1, T)
    second = store.claim("w2", 1, T)
    store.enqueue([event("3", email="a@x", hubspot_id="7")], T)
    assert store.claim("w3", 10, T) == []
    store.commit([], [c.id for c in first], T)
    assert store.claim("w3", 10, T) == []
    store.commit([], [c.id for c in second], T)
    assert ids_of(store.claim("w3", 10, T)) == ["3"]


def test_erase_requests_lock_the_profile_they_name(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    store.enqueue([event("1", email="a@x")], T)
    held = store.claim("w1", 10, T)
    erase = Inbound("default", "erase:1", {ERASE: {"email": "a@x"}}, ("hubspot",))
    store.enqueue([erase], T)
    assert store.claim("w2", 10, T) == []
    store.commit([], [c.id for c in held], T)
    assert [c.id for c in store.claim("w2", 10, T)] != []


def test_a_dead_consumers_events_go_to_another_after_the_min_idle(
    redis_client: redis.Redis,
) -> None:
    store = make(redis_client, min_idle=0.2)
    store.enqueue([event("1", email="a@x"), event("2", email="b@x")], T)
    assert ids_of(store.claim("dead", 10, T)) == ["1", "2"]  # and never commits
    store.enqueue([event("3", email="a@x")], T)
    assert store.claim("alive", 10, T) == []
    time.sleep(0.3)
    again = store.claim("alive", 10, T)
    assert ids_of(again) == ["1", "2", "3"]
    assert [c.attempts for c in again] == [2, 2, 1]
    store.commit([], [c.id for c in again], T)
    assert store.depth() == 0
    consumers = redis_client.xinfo_consumers(RedisKeys().events, "workers")
    assert "dead" not in {c["name"].decode() for c in consumers}


def test_release_leases_puts_back_only_silent_consumers_events(
    redis_client: redis.Redis,
) -> None:
    store = make(redis_client, min_idle=0.2)
    store.enqueue([event("1", email="a@x")], T)
    store.claim("dead", 10, T)
    assert store.release_leases() == 0
    time.sleep(0.3)
    assert store.release_leases() == 1
    assert ids_of(store.claim("w", 10, T)) == ["1"]


def test_a_consumer_taken_for_dead_cannot_commit(redis_client: redis.Redis) -> None:
    store, other = make(redis_client, min_idle=0.2), make(redis_client, min_idle=0.2)
    store.enqueue([event("1", email="a@x")], T)
    slow = store.claim("slow", 10, T)
    time.sleep(0.3)
    taken = other.claim("fast", 10, T)
    update = ProfileUpdate("default", "email:a@x", {"n": "slow"})
    with pytest.raises(ClaimLost):
        store.commit([update], [c.id for c in slow], T)
    assert store.load_context("default", "email:a@x") is None  # nothing of it was applied
    other.commit([], [c.id for c in taken], T)
    assert store.depth() == 0


def test_uncommitted_events_come_back_to_the_same_consumer(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    store.enqueue([event("1", email="a@x")], T)
    store.claim("w", 10, T)  # the commit failed: the next claim hands them out again
    again = store.claim("w", 10, T)
    assert (ids_of(again), again[0].attempts) == (["1"], 2)


def test_one_instance_dispatches_a_platform_at_a_time(redis_client: redis.Redis) -> None:
    first = make(redis_client, dispatch_lease=0.2)
    second = make(redis_client, dispatch_lease=0.2)
    decide(first, "one")
    assert waiting(first) == ["one"]
    assert waiting(second) == []
    assert second.oldest_due("default", "hubspot", 1e12) is None
    time.sleep(0.3)  # the first instance died
    assert waiting(second) == ["one"]


def test_a_dispatcher_taking_over_forgets_what_was_in_flight(
    redis_client: redis.Redis,
) -> None:
    first = make(redis_client, dispatch_lease=0.2)
    decide(first, "one")
    first.settle([Settlement(send(first), "written")], T)
    decide(first, "two", T + 1)
    send(first)  # and dies mid-call
    time.sleep(0.3)
    second = make(redis_client, dispatch_lease=0.2)
    assert waiting(second) == ["two"]
    decide(second, "one", T + 2)  # "two" is not in flight any more: back to what it has
    assert waiting(second) == []


def test_status_warns_about_persistence_and_eviction(redis_client: redis.Redis) -> None:
    store = make(redis_client)
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        report = store.status(T)
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert report["redis"]["appendonly"] is False
    assert report["redis"]["maxmemory_policy"] == "allkeys-lru"
    assert any("appendonly" in w for w in report["warnings"])
    assert any("noeviction" in w for w in report["warnings"])
    assert store.status(T)["warnings"] == [report["warnings"][0]]


def test_scripts_build_lock_keys_the_way_the_helper_does(redis_client: redis.Redis) -> None:
    store = RedisPipelineStore(redis_client, queue_limit=10, prefix="shop")
    store.enqueue([Inbound("acct", "1", {"profile": {"email": "a@x"}}, ("hubspot",))], T)
    store.claim("w", 10, T)
    assert redis_client.exists(RedisKeys("shop").lock("acct", "email:a@x")) == 1
    with pytest.raises(ValueError, match="prefix"):
        RedisKeys("a:b")
