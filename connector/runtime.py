"""What the running connector stands on: the outside world as injected (`Runtime`), and
where state shared by every process lives (`Shared`: Redis with `DCB_REDIS_URL`, else this
process and its SQLite file), with the pipeline store opened on it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_limits import (
    RedisFixedWindowLimiter,
    RedisPauses,
    RedisRollingWindowLimiter,
)
from adapters.storage.redis_store import RedisPipelineStore
from adapters.storage.sqlite import SqlitePipelineStore
from connector.core.pauses import PauseBook, Pauses
from connector.core.ratelimit import FixedWindowLimiter, RateLimiter
from connector.endpoints import ACCOUNT
from connector.settings import Settings
from webhooks.site import RateLimits

STORE_FILE = "dcb.sqlite3"


@dataclass
class Runtime:
    """What the outside world is to the service: injected so tests can control it."""

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random
    epoch: Callable[[], float] = time.time


Store = SqlitePipelineStore | RedisPipelineStore


@dataclass
class Shared:
    """Where state shared by every process lives: Redis when `DCB_REDIS_URL` is set (the
    queue, contexts, writes, rate limits and pauses), else this process and its SQLite file."""

    redis: redis.Redis | None = None
    keys: RedisKeys = field(default_factory=RedisKeys)

    @classmethod
    def from_settings(cls, settings: Settings) -> Shared:
        if settings.redis_url is None:
            return cls()
        return cls(redis.Redis.from_url(settings.redis_url, health_check_interval=30))

    def pauses(self, account: str, platform: str, runtime: Runtime) -> PauseBook:
        if self.redis is None:
            return Pauses(runtime.epoch)
        return RedisPauses(self.redis, self.keys, account, platform, runtime.epoch)

    def rolling_limiter(self, account: str, limit: int, runtime: Runtime) -> RateLimiter | None:
        """HubSpot's ten-second window shared by every process (None: keep it in memory)."""
        if self.redis is None:
            return None
        return RedisRollingWindowLimiter(
            self.redis, self.keys, account, "hubspot", limit=limit, window=10.0, clock=runtime.epoch
        )

    def windows_limiter(
        self, account: str, runtime: Runtime
    ) -> Callable[[Any], RateLimiter] | None:
        """Klaviyo's fixed windows shared by every process (None: keep them in memory)."""
        client = self.redis
        if client is None:
            return None
        return lambda windows: RedisFixedWindowLimiter(
            client, self.keys, account, "klaviyo", windows=windows, clock=runtime.epoch
        )

    def per_minute(self, limit: int, runtime: Runtime) -> RateLimiter:
        """At most `limit` calls per key in each clock minute: the browser path's limits,
        shared by every process on Redis."""
        if self.redis is None:
            return FixedWindowLimiter([(limit, 60.0)], runtime.epoch)
        return RedisFixedWindowLimiter(
            self.redis, self.keys, ACCOUNT, "browser", windows=[(limit, 60.0)], clock=runtime.epoch
        )

    def browser_limits(self, settings: Settings, runtime: Runtime) -> RateLimits:
        return RateLimits(
            per_key=self.per_minute(settings.browser_rate_per_key, runtime),
            per_address=self.per_minute(settings.browser_rate_per_address, runtime),
            per_browser=self.per_minute(settings.browser_rate_per_browser, runtime),
        )


def open_store(settings: Settings, shared: Shared | None = None) -> Store:
    """The pipeline store the settings name: Redis with `DCB_REDIS_URL`, else the embedded
    SQLite file in `DCB_DATA_DIR`."""
    backend = shared or Shared.from_settings(settings)
    if backend.redis is not None:
        return RedisPipelineStore(
            backend.redis, queue_limit=settings.queue_limit, prefix=backend.keys.prefix
        )
    return SqlitePipelineStore(settings.data_dir / STORE_FILE, settings.queue_limit)
