"""What only the embedded store does: leases by the injected clock, dedup sweeping,
restart reclaim, and reopening its file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.storage.sqlite import LEASE_SECONDS, SqlitePipelineStore
from adapters.storage.sqlite_schema import SCHEMA_VERSION, SchemaError
from connector.core.storage import Inbound, Settlement, StoreClosed, Timer
from tests.storage.test_store_contract import T, decide, inbound, send, waiting


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlitePipelineStore]:
    s = SqlitePipelineStore(tmp_path / "dcb.sqlite3", queue_limit=50)
    yield s
    s.close()


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


def test_a_restart_forgets_what_was_in_flight(store: SqlitePipelineStore) -> None:
    decide(store, "one")
    store.settle([Settlement(send(store), "written")], T)
    decide(store, "two", T + 1)
    send(store)
    store.release_leases()  # the process died mid-call; "two" stays pending and is resent
    decide(store, "one", T + 2)
    assert waiting(store) == []


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "dcb.sqlite3"
    first = SqlitePipelineStore(path)
    first.enqueue([inbound("a")], T)
    first.close()
    second = SqlitePipelineStore(path)
    assert [c.event["event_id"] for c in second.claim("w", 10, T)] == ["a"]
    assert second.enqueue([inbound("a")], T).duplicates == 1
    second.close()


def test_an_armed_timer_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dcb.sqlite3"
    first = SqlitePipelineStore(path)
    event = {"type": "cart_abandoned", "event_id": "abandoned:c1", "profile": {"email": "a@x.y"}}
    first.set_timer("default", "email:a@x.y", Timer(T + 60, "abandoned:c1", event, ("hubspot",)))
    first.close()
    second = SqlitePipelineStore(path)
    assert second.fire_timers(T + 59) == 0
    assert second.fire_timers(T + 61) == 1
    assert [c.event["type"] for c in second.claim("w", 10, T + 61)] == ["cart_abandoned"]
    second.close()


def test_a_database_of_schema_1_gains_the_version_and_cache_tables(tmp_path: Path) -> None:
    path = tmp_path / "dcb.sqlite3"
    old = SqlitePipelineStore(path)
    decide(old, "one")
    old.close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE context_versions")
    db.execute("DROP TABLE decisions")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    reopened = SqlitePipelineStore(path)
    try:
        assert reopened.context_version("default", "email:a@x.y") == 0
        decide(reopened, "two")
        assert reopened.context_version("default", "email:a@x.y") == 1
        row = (
            reopened._connection()
            .execute("SELECT value FROM meta WHERE key = 'schema_version'")
            .fetchone()
        )
        assert row[0] == str(SCHEMA_VERSION)
    finally:
        reopened.close()


def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dcb.sqlite3"
    SqlitePipelineStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="newer dcb-connector"):
        SqlitePipelineStore(path)


def test_an_enqueue_after_close_fails_instead_of_waiting_forever(tmp_path: Path) -> None:
    store = SqlitePipelineStore(tmp_path / "dcb.sqlite3")
    store.close()
    event = {"type": "cart_updated", "profile": {"email": "a@x.y"}}
    with pytest.raises(StoreClosed):
        store.enqueue([Inbound("default", "late", event, ("hubspot",))], 0.0)
