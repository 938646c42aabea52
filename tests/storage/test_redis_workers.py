"""Two worker processes on one Redis: every event applied once, each profile's in order."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from adapters.storage.redis_store import RedisPipelineStore
from blocks.loading import load_library
from connector.core.processing import Processor
from connector.core.storage import Inbound
from connector.rulesets import load_ruleset_file

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
PROFILES = 4
EVENTS = 40  # per profile, within the 64 event ids a context remembers


def work(url: str, consumer: str, seconds: float) -> None:
    """One worker process: claim five events at a time until the queue stays empty."""
    client = redis.Redis.from_url(url)
    store = RedisPipelineStore(client, queue_limit=10_000)
    library = load_library()
    rules = load_ruleset_file(None, library.catalogue)
    processor = Processor(store, lambda _a: rules, library.renderer, lambda: NOW, consumer)
    deadline, idle_since = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        if processor.run_once(5):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 0.5 and store.depth() == 0:
            return


def event(profile: int, n: int) -> dict[str, Any]:
    return {
        "type": "product_viewed", "event_id": f"p{profile}-{n:02d}",
        "occurred_at": (NOW - timedelta(minutes=EVENTS - n)).isoformat(),
        "profile": {"email": f"p{profile}@example.com"},
    }  # fmt: skip


def test_two_worker_processes_keep_each_profiles_order(
    redis_client: redis.Redis, redis_url: str
) -> None:
    store = RedisPipelineStore(redis_client, queue_limit=10_000)
    items = [
        Inbound("default", f"p{p}-{n}", event(p, n), ("hubspot",))
        for n in range(EVENTS)
        for p in range(PROFILES)
    ]
    assert store.enqueue(items, NOW.timestamp()).accepted == PROFILES * EVENTS
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=work, args=(redis_url, f"w{i}", 20.0)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert store.depth() == 0
    for p in range(PROFILES):
        context = store.load_context("default", f"email:p{p}@example.com")
        assert context is not None
        assert context["seen_events"] == [f"p{p}-{n:02d}" for n in range(EVENTS)]
