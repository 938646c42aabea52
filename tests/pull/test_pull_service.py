"""`PullService` and the cache layers on their own: budget, failures, TTL, invalidation
hints, and the rules version."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from adapters.storage.decision_cache import (
    MemoryDecisionCache,
    RedisDecisionCache,
    RedisInvalidations,
    SqliteDecisionCache,
)
from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_store import RedisPipelineStore
from adapters.storage.sqlite import SqlitePipelineStore
from connector.bootstrap import load_rules
from connector.core.lookup import CachedDecision, CurrentDecision
from connector.pull import CacheObserver, PullService, rules_version
from connector.settings import Settings
from tests.pull.conftest import checkout, give_context
from tests.waiting import wait_for

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class SlowStore:
    """A real store whose `context_version` can be made to hang or fail."""

    def __init__(self, inner: SqlitePipelineStore) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.release.set()
        self.failing = False

    def context_version(self, account: str, key: str) -> int:
        if self.failing:
            raise ConnectionError("store down")
        self.release.wait(5)
        return self.inner.context_version(account, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlitePipelineStore]:
    made = SqlitePipelineStore(tmp_path / "dcb.sqlite3")
    yield made
    made.close()


def service(store: Any, tmp_path: Path, clock: Clock, **options: Any) -> PullService:
    library, ruleset = load_rules(Settings())
    return PullService(
        store,
        {"default": (ruleset, "v1")},
        library.renderer,
        MemoryDecisionCache(100),
        SqliteDecisionCache(tmp_path / "dcb.sqlite3"),
        clock,
        **options,
    )


def test_a_slow_store_gets_the_fallback_within_the_budget(
    store: SqlitePipelineStore, tmp_path: Path
) -> None:
    give_context(store, checkout("ada@example.com"))
    slow = SlowStore(store)
    lookup = service(slow, tmp_path, Clock(), budget=0.05)
    slow.release.clear()
    result = lookup.lookup("klaviyo", "default", "ada@example.com")
    assert (result.decision.decided, result.decision.block) == (False, "we_noticed")
    assert "budget" in result.decision.reason and not result.cacheable
    slow.release.set()  # the lookup left running still fills the caches
    wait_for(lambda: lookup.l1.get("default", "email:ada@example.com") is not None)
    assert lookup.lookup("klaviyo", "default", "ada@example.com").source == "l1"
    lookup.close()


def test_a_failing_store_gets_the_fallback(store: SqlitePipelineStore, tmp_path: Path) -> None:
    give_context(store, checkout("ada@example.com"))
    slow = SlowStore(store)
    slow.failing = True
    lookup = service(slow, tmp_path, Clock())
    result = lookup.lookup("klaviyo", "default", "ada@example.com")
    assert (
        result.decision.block == "we_noticed"
        and result.decision.reason == "the store is unavailable"
    )
    assert not result.cacheable
    lookup.close()


def test_entries_older_than_the_ttl_are_decided_again(
    store: SqlitePipelineStore, tmp_path: Path
) -> None:
    give_context(store, checkout("ada@example.com"))
    clock = Clock()
    seen: list[tuple[str, str]] = []
    ages: list[float] = []
    lookup = service(
        store, tmp_path, clock, ttl=60.0,
        observer=CacheObserver(lambda layer, result: seen.append((layer, result)),
                               lambda _layer, age: ages.append(age)),
    )  # fmt: skip
    assert lookup.lookup("klaviyo", "default", "ada@example.com").source == "decided"
    clock.now += timedelta(seconds=30)
    assert lookup.lookup("klaviyo", "default", "ada@example.com").source == "l1"
    assert ages == [30.0]
    clock.now += timedelta(seconds=31)
    assert lookup.lookup("klaviyo", "default", "ada@example.com").source == "decided"
    assert seen == [("l1", "miss"), ("l2", "miss"), ("l1", "hit"), ("l1", "miss"), ("l2", "miss")]
    lookup.close()


def test_a_new_rules_version_misses(store: SqlitePipelineStore, tmp_path: Path) -> None:
    give_context(store, checkout("ada@example.com"))
    first = service(store, tmp_path, Clock())
    first.lookup("klaviyo", "default", "ada@example.com")
    second = service(store, tmp_path, Clock())
    second.rules = {"default": (second.rules["default"][0], "v2")}
    assert second.lookup("klaviyo", "default", "ada@example.com").source == "decided"
    first.close()
    second.close()


def test_the_rules_version_follows_the_rule_set_and_block_files(tmp_path: Path) -> None:
    _, ruleset = load_rules(Settings())
    shipped = rules_version(Settings(), ruleset)
    assert shipped.startswith(f"{ruleset.version}-")
    assert rules_version(Settings(), ruleset) == shipped
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "ruleset: t\nversion: 3\nrules: []\nfallback: {block: we_noticed}\n", encoding="utf-8"
    )
    mine = Settings(rules=rules)
    _, mine_ruleset = load_rules(mine)
    assert rules_version(mine, mine_ruleset) != shipped  # same `version`, other content
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    (blocks / "extra.yaml").write_text("id: extra\noutputs: {headline: Hi}\n", encoding="utf-8")
    with_blocks = Settings(blocks_dir=blocks)
    assert rules_version(with_blocks, ruleset) != shipped


def test_a_cache_write_for_a_superseded_version_is_dropped(
    store: SqlitePipelineStore, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """A decision that finishes after its profile changed (or was erased) is not kept."""
    key = give_context(store, checkout("ada@example.com"))
    version = store.context_version("default", key)
    entry = CachedDecision(
        version, "v1", 0.0, CurrentDecision(True, "b", None, "treatment", {"dcb_body": "x"})
    )
    sqlite_cache = SqliteDecisionCache(tmp_path / "dcb.sqlite3")
    store.erase("default", key)
    sqlite_cache.put("default", key, entry)
    assert sqlite_cache.get("default", key) is None
    redis_store = RedisPipelineStore(redis_client, queue_limit=10)
    redis_key = give_context(redis_store, checkout("ada@example.com"))
    redis_cache = RedisDecisionCache(redis_client, RedisKeys(), ttl=60)
    current = redis_store.context_version("default", redis_key)
    redis_cache.put("default", redis_key, entry.__class__(current, "v1", 0.0, entry.decision))
    assert redis_cache.get("default", redis_key) is not None
    redis_store.erase("default", redis_key)  # erase drops the entry, and a late write is refused
    assert redis_cache.get("default", redis_key) is None
    redis_cache.put("default", redis_key, entry.__class__(current, "v1", 0.0, entry.decision))
    assert redis_cache.get("default", redis_key) is None
    sqlite_cache.close()


def test_the_invalidation_hint_evicts_other_processes_l1(redis_client: redis.Redis) -> None:
    store = RedisPipelineStore(redis_client, queue_limit=10)
    key = give_context(store, checkout("ada@example.com"))
    version = store.context_version("default", key)
    l1 = MemoryDecisionCache(10)
    decision = CurrentDecision(True, "b", None, "treatment", {})
    l1.put("default", key, CachedDecision(version, "v1", 0.0, decision))
    l1.put("default", "email:bob@example.com", CachedDecision(1, "v1", 0.0, decision))
    hints = RedisInvalidations(
        redis_client, RedisKeys(), lambda a, k, v: l1.evict(a, k, older_than=v)
    )
    hints.ensure_started()
    try:
        wait_for(lambda: redis_client.pubsub_numsub(RedisKeys().context_changed)[0][1] >= 1)
        give_context(store, checkout("ada@example.com", item="Silk scarf"))
        wait_for(lambda: l1.get("default", key) is None)
        assert l1.get("default", "email:bob@example.com") is not None  # only the changed one
        assert hints.received == 1
    finally:
        hints.stop()


def test_l1_is_a_bounded_lru() -> None:
    l1 = MemoryDecisionCache(2)
    entry = CachedDecision(1, "v", 0.0, CurrentDecision(True, "b", None, "treatment", {}))
    for key in ("a", "b", "c"):
        l1.put("default", key, entry)
    assert len(l1) == 2 and l1.get("default", "a") is None
    assert not l1.evict("default", "b", older_than=1)  # already the newest version
    assert l1.evict("default", "b", older_than=2)
