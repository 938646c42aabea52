"""The store under test: the embedded one or Redis (the server comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.storage.redis_store import RedisPipelineStore
from adapters.storage.sqlite import SqlitePipelineStore

Store = SqlitePipelineStore | RedisPipelineStore


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Builds the store under test: the embedded one, or Redis (keyword arguments go to
    `RedisPipelineStore`, e.g. a short `min_idle`)."""
    made: list[Store] = []

    def make(queue_limit: int = 100_000, **redis_options: Any) -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqlitePipelineStore(tmp_path / "dcb.sqlite3", queue_limit)
        else:
            client = request.getfixturevalue("redis_client")
            store = RedisPipelineStore(client, queue_limit=queue_limit, **redis_options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    return make_store()
