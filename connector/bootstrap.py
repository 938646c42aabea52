"""The composition root: real objects from one `Settings`, wired together.

Nothing else builds clients, stores or the app. Tests call `build_service` with their own
settings (pointing at fake platform APIs) and, where they need it, their own clock.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Flask

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_limits import (
    RedisFixedWindowLimiter,
    RedisPauses,
    RedisRollingWindowLimiter,
)
from adapters.storage.redis_status import redis_health
from adapters.storage.redis_store import RedisPipelineStore
from adapters.storage.sqlite import SqlitePipelineStore
from blocks.loading import BlockLibrary, load_library
from connector.core.delivery import Deliverer
from connector.core.dispatch import Dispatcher
from connector.core.intake import Intake
from connector.core.pauses import PauseBook, Pauses
from connector.core.ports import PlatformClient, ProvisionReport
from connector.core.processing import Processor
from connector.core.ratelimit import RateLimiter
from connector.core.rules import RuleSet
from connector.core.storage import Settlement
from connector.core.validity import Revalidation
from connector.endpoints import ACCOUNT, build_endpoints, build_pull
from connector.manifest import load_manifest
from connector.metrics import Metrics
from connector.pull import open_pull
from connector.rulesets import load_ruleset_file
from connector.runtime_report import RuntimeReport
from connector.service import Service
from connector.settings import Settings
from webhooks.app import Observer, create_app
from webhooks.pull import add_pull_route

log = logging.getLogger("dcb")

STORE_FILE = "dcb.sqlite3"
#: The least time between two calls carrying a partial batch: the documented steady rate
#: (HubSpot: DCB_HUBSPOT_RATE calls per rolling 10 s; Klaviyo profile-import: 700/min).
PACE_SECONDS: dict[str, Callable[[Settings], float]] = {
    "hubspot": lambda s: 10.0 / s.hubspot_rate,
    "klaviyo": lambda _s: 60.0 / 700,
}


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

    def pauses(self, platform: str, runtime: Runtime) -> PauseBook:
        if self.redis is None:
            return Pauses(runtime.epoch)
        return RedisPauses(self.redis, self.keys, ACCOUNT, platform, runtime.epoch)

    def rolling_limiter(self, limit: int, runtime: Runtime) -> RateLimiter | None:
        """HubSpot's ten-second window shared by every process (None: keep it in memory)."""
        if self.redis is None:
            return None
        return RedisRollingWindowLimiter(
            self.redis, self.keys, ACCOUNT, "hubspot", limit=limit, window=10.0, clock=runtime.epoch
        )

    def windows_limiter(self, runtime: Runtime) -> Callable[[Any], RateLimiter] | None:
        """Klaviyo's fixed windows shared by every process (None: keep them in memory)."""
        client = self.redis
        if client is None:
            return None
        return lambda windows: RedisFixedWindowLimiter(
            client, self.keys, ACCOUNT, "klaviyo", windows=windows, clock=runtime.epoch
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


def load_rules(settings: Settings) -> tuple[BlockLibrary, RuleSet]:
    """The block library and the rule set; raises `DocumentError` naming file and line."""
    library = load_library(settings.blocks_dir)
    return library, load_ruleset_file(settings.rules, library.catalogue)


def hubspot_client(
    settings: Settings, token: str, runtime: Runtime, shared: Shared | None = None
) -> tuple[HubSpotClient, PauseBook]:
    """A HubSpot client for `token` (provisioning the manifest's properties), its pauses."""
    backend = shared or Shared()
    pauses = backend.pauses("hubspot", runtime)
    limiter = backend.rolling_limiter(settings.hubspot_rate, runtime)
    gate = hubspot_throttle(
        pauses, runtime.sleep, runtime.epoch, settings.hubspot_rate, limiter=limiter
    )
    client = HubSpotClient(
        token,
        base_url=settings.hubspot_api_url,
        gate=gate,
        schema=load_manifest().property_schema,
        clock=runtime.epoch,
    )
    return client, pauses


def klaviyo_client(
    settings: Settings, key: str, runtime: Runtime, shared: Shared | None = None
) -> tuple[KlaviyoClient, PauseBook]:
    """A Klaviyo client for the private API `key`, and its pauses."""
    backend = shared or Shared()
    pauses = backend.pauses("klaviyo", runtime)
    gate = klaviyo_throttle(
        pauses, runtime.sleep, runtime.epoch, windows_limiter=backend.windows_limiter(runtime)
    )
    client = KlaviyoClient(key, base_url=settings.klaviyo_api_url, gate=gate, sleep=runtime.sleep)
    return client, pauses


Clients = dict[str, tuple[PlatformClient, PauseBook]]


def build_clients(settings: Settings, runtime: Runtime, shared: Shared | None = None) -> Clients:
    """One client per configured platform, each with the account's pauses and rate gate."""
    clients: Clients = {}
    if settings.hubspot_access_token is not None:
        token = settings.hubspot_access_token.value
        clients["hubspot"] = hubspot_client(settings, token, runtime, shared)
    if settings.klaviyo_api_key is not None:
        key = settings.klaviyo_api_key.value
        clients["klaviyo"] = klaviyo_client(settings, key, runtime, shared)
    return clients


def provision(clients: Clients) -> dict[str, ProvisionReport]:
    """Check each platform can take our properties (creating HubSpot's if missing)."""
    reports = {}
    for platform, (client, _) in clients.items():
        report = client.provision()
        reports[platform] = report
        if report.problems:
            log.error("%s provisioning: %s", platform, "; ".join(report.problems))
        elif report.created:
            log.info("%s: created %s", platform, ", ".join(report.created))
    return reports


def build_service(
    settings: Settings,
    runtime: Runtime | None = None,
    *,
    web: bool = True,
    workers: int = 1,
) -> Service:
    """The running connector's parts, wired; nothing started yet.

    `web` builds the HTTP app's intake; `workers` is how many processor loops to run (0 for
    a web-only process: `dcb web`). Dispatchers run wherever processors do.
    """
    rt = runtime or Runtime()
    library, ruleset = load_rules(settings)
    shared = Shared.from_settings(settings)
    store = open_store(settings, shared)
    metrics = Metrics(store.depth)
    clients = build_clients(settings, rt, shared) if workers else {}
    instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    processors = [
        Processor(
            store,
            lambda _account: ruleset,
            library.renderer,
            rt.clock,
            consumer=f"{instance}-{n}",
            abandon_after=settings.abandon_after,
            on_decided=metrics.decided,
        )
        for n in range(workers)
    ]
    report = RuntimeReport(ACCOUNT, {p: pauses for p, (_, pauses) in clients.items()}, rt.epoch)

    def settled(settlements: Sequence[Settlement]) -> None:
        metrics.settled(settlements, rt.epoch())
        report.settled(settlements)

    revalidation = Revalidation(store, lambda _account: ruleset, rt.clock)
    dispatchers = [
        Dispatcher(
            store,
            ACCOUNT,
            platform,
            Deliverer(client, pauses, sleep=rt.sleep, random=rt.random).deliver,
            client.max_batch,
            rt.epoch,
            flush_seconds=settings.flush_ms / 1000,
            pace_seconds=PACE_SECONDS[platform](settings),
            on_settled=settled,
            still_valid=revalidation.still_valid,
            redecide=revalidation.redecide,
        )
        for platform, (client, pauses) in clients.items()
    ]
    intake = Intake(store, rt.clock)

    def ready() -> tuple[bool, dict[str, Any]]:
        try:
            store.ping()
        except Exception as exc:  # any store failure means not ready
            return False, {"store": f"unreachable: {type(exc).__name__}"}
        if shared.redis is None:
            return True, {"store": "ok"}
        warnings = redis_health(shared.redis)["warnings"]  # persistence off, eviction on
        return True, {"store": "ok", "warnings": warnings} if warnings else {"store": "ok"}

    service_ref: list[Service] = []

    def answered(endpoint: str, status: int, seconds: float) -> None:
        metrics.answered(endpoint, status, seconds)
        if status in (200, 202) and service_ref:
            service_ref[0].events_arrived()

    pull = None
    if web:
        pull = open_pull(
            settings, store, shared.redis, shared.keys, settings.data_dir / STORE_FILE,
            library, ruleset, metrics, rt.clock,
        )  # fmt: skip

    def pull_route(app: Flask) -> None:
        if pull is not None:
            route = build_pull(settings, pull.service.lookup)
            add_pull_route(app, route, epoch=rt.epoch, answered=metrics.answered)

    app = create_app(
        build_endpoints(settings) if web else [],
        intake,
        ready=ready,
        metrics=metrics.exposition,
        clock=rt.clock,
        observer=Observer(answered),
        extra=pull_route,
    )

    def upkeep() -> None:
        log.info("expired %d dedup keys", store.expire_dedup(rt.epoch()))
        if pull is not None:
            ttl = settings.pull_cache_ttl.total_seconds()
            log.info("expired %d cached decisions", pull.expire(rt.epoch() - ttl))

    def close() -> None:
        if pull is not None:
            pull.close()
        store.close()

    service = Service(
        app=app,
        processors=processors,
        dispatchers=dispatchers,
        reclaim=store.release_leases,
        upkeep=upkeep,
        close=close,
        fire_timers=lambda: store.fire_timers(rt.epoch()),
        publish=lambda: store.save_runtime(ACCOUNT, report.snapshot()),
    )
    service_ref.append(service)
    app.extensions["dcb"] = {
        "service": service,
        "store": store,
        "clients": clients,
        "pull": pull,
    }
    return service
