"""Hits, misses and invalidation across processes: two `dcb web` processes on one Redis,
each with its own L1, while this test changes contexts in the shared store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from adapters.storage.redis_store import RedisPipelineStore
from tests.chaos.harness import Server
from tests.pull.conftest import BEARER, EVENTS_KEY, PULL_KEY, SIGNING_KEY, checkout, give_context
from tests.redis_server import free_port


@pytest.fixture
def two_webs(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> Iterator[tuple[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCB_")}
    env.update(
        DCB_REDIS_URL=redis_url,
        DCB_DATA_DIR=str(tmp_path / "data"),
        DCB_PULL_API_KEYS=PULL_KEY,
        DCB_EVENTS_API_KEY=EVENTS_KEY,
        DCB_URL_SIGNING_KEY=SIGNING_KEY,
    )
    servers = [
        Server(free_port(), {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"m{n}")},
               tmp_path / f"web{n}.log", ("web", "--workers", "1"))
        for n in range(2)
    ]  # fmt: skip
    for n, server in enumerate(servers):
        (tmp_path / f"m{n}").mkdir()
        server.start()
    yield tuple(f"http://127.0.0.1:{s.port}" for s in servers)  # type: ignore[misc]
    for server in servers:
        server.terminate()


def pull(base: str, profile: str) -> requests.Response:
    answer = requests.get(f"{base}/v1/blocks/klaviyo/default/{profile}", headers=BEARER, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def test_hits_misses_and_invalidation_across_two_processes(
    two_webs: tuple[str, str], redis_client: redis.Redis
) -> None:
    a, b = two_webs
    store = RedisPipelineStore(redis_client, queue_limit=1000)
    give_context(store, checkout("ada@example.com"))
    give_context(store, checkout("bob@example.com"))

    first = pull(a, "ada@example.com")
    assert first.headers["X-DCB-Cache"] == "decided"
    from_b = pull(b, "ada@example.com")
    assert from_b.headers["X-DCB-Cache"] == "l2"  # decided by A, shared through Redis
    assert from_b.headers["ETag"] == first.headers["ETag"]
    assert pull(a, "ada@example.com").headers["X-DCB-Cache"] == "l1"
    assert pull(b, "ada@example.com").headers["X-DCB-Cache"] == "l1"
    bob = pull(a, "bob@example.com")
    assert pull(b, "bob@example.com").headers["X-DCB-Cache"] == "l2"

    give_context(store, checkout("ada@example.com", item="Silk scarf"))  # a new cart

    changed = pull(b, "ada@example.com")  # B's L1 entry is stale: a miss, decided again
    assert changed.headers["X-DCB-Cache"] == "decided"
    assert "Silk scarf" in changed.json()["properties"]["dcb_body"]
    assert changed.headers["ETag"] != first.headers["ETag"]
    at_a = pull(a, "ada@example.com")  # A's too: it finds B's new entry in L2
    assert at_a.headers["X-DCB-Cache"] == "l2"
    assert at_a.headers["ETag"] == changed.headers["ETag"]
    for base in (a, b):  # the other profile was not touched
        unchanged = pull(base, "bob@example.com")
        assert unchanged.headers["X-DCB-Cache"] == "l1"
        assert unchanged.headers["ETag"] == bob.headers["ETag"]
    not_modified = requests.get(
        f"{a}/v1/blocks/klaviyo/default/bob@example.com",
        headers={**BEARER, "If-None-Match": bob.headers["ETag"]},
        timeout=10,
    )
    assert not_modified.status_code == 304
    metrics = requests.get(f"{a}/metrics", timeout=10).text
    assert 'dcb_pull_cache_lookups_total{layer="l1",result="hit"}' in metrics
