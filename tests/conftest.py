"""Suite-wide settings and fixtures: hypothesis runs without deadlines (CI machines share
two cores); one real redis-server per session, flushed before each test that uses it."""

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, settings

from tests.redis_server import RedisServer

settings.register_profile(
    "dcb", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("dcb")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()
