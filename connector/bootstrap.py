"""The composition root: real objects from one `Settings`, wired together.

Nothing else builds clients, stores or the app. Tests call `build_service` with their own
settings (pointing at fake platform APIs) and, where they need it, their own clock.

Every account gets its own clients, rate limiter and pause book per platform, its own rule
set and abandonment window, and its own dispatcher thread per platform: one account's
429s, outage or backlog never hold another's writes.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

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
from connector.accounts import Account, Accounts, read_accounts
from connector.core.delivery import Deliverer
from connector.core.dispatch import Dispatcher
from connector.core.intake import Intake
from connector.core.pauses import PauseBook, Pauses
from connector.core.ports import PlatformClient, PortalDirectory, ProvisionReport, TokenSource
from connector.core.processing import Processor
from connector.core.ratelimit import RateLimiter
from connector.core.rules import RuleSet
from connector.core.storage import Settlement
from connector.core.validity import Revalidation
from connector.endpoints import ACCOUNT, build_endpoints
from connector.manifest import load_manifest
from connector.metrics import Metrics
from connector.rulesets import load_ruleset_file
from connector.runtime_report import RuntimeReport
from connector.service import Service
from connector.settings import Settings
from webhooks.app import Observer, create_app

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
    settings: Settings,
    token: str,
    runtime: Runtime,
    shared: Shared | None = None,
    account: str = ACCOUNT,
) -> tuple[HubSpotClient, PauseBook]:
    """A HubSpot client for `token` (provisioning the manifest's properties), its pauses."""
    backend = shared or Shared()
    pauses = backend.pauses(account, "hubspot", runtime)
    limiter = backend.rolling_limiter(account, settings.hubspot_rate, runtime)
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
    settings: Settings,
    key: str,
    runtime: Runtime,
    shared: Shared | None = None,
    account: str = ACCOUNT,
) -> tuple[KlaviyoClient, PauseBook]:
    """A Klaviyo client for the private API `key`, and its pauses."""
    backend = shared or Shared()
    pauses = backend.pauses(account, "klaviyo", runtime)
    windows = backend.windows_limiter(account, runtime)
    gate = klaviyo_throttle(pauses, runtime.sleep, runtime.epoch, windows_limiter=windows)
    client = KlaviyoClient(key, base_url=settings.klaviyo_api_url, gate=gate, sleep=runtime.sleep)
    return client, pauses


Clients = dict[str, tuple[PlatformClient, PauseBook]]
#: Each account's clients, by account name.
AccountClients = dict[str, Clients]


def build_clients(
    settings: Settings,
    runtime: Runtime,
    shared: Shared | None = None,
    *,
    account: Account | None = None,
    tokens: TokenSource | None = None,
) -> Clients:
    """One client per platform of the account (default: the settings' implicit one), each
    with the account's own pauses and rate gate. A platform whose credential is in the
    token store and not there yet (not installed, disconnected) gets no client."""
    who = account or Account(ACCOUNT, settings)
    clients: Clients = {}
    for platform in who.platforms:
        token = who.access_token(platform, tokens)
        if token is None:
            log.warning("account %s: no %s access token in the token store", who.name, platform)
            continue
        build = hubspot_client if platform == "hubspot" else klaviyo_client
        clients[platform] = build(who.settings, token, runtime, shared, who.name)
    return clients


def provision(clients: Mapping[str, Clients]) -> dict[str, dict[str, ProvisionReport]]:
    """Check each account's platforms can take our properties (creating HubSpot's if
    missing); one account's failure is logged and does not stop the others."""
    reports: dict[str, dict[str, ProvisionReport]] = {}
    for account, platforms in clients.items():
        for platform, (client, _) in platforms.items():
            try:
                report = client.provision()
            except Exception as exc:  # a platform that is down must not stop the others
                log.error("%s/%s provisioning failed: %s", account, platform, exc)
                continue
            reports.setdefault(account, {})[platform] = report
            if report.problems:
                log.error("%s/%s provisioning: %s", account, platform, "; ".join(report.problems))
            elif report.created:
                log.info("%s/%s: created %s", account, platform, ", ".join(report.created))
    return reports


def token_source(settings: Settings) -> TokenSource | None:
    """The encrypted token store, for credentials `dcb.toml` keeps there
    (`access_token = { store = "oauth" }`); None while no store is wired in."""
    return None


def accounts_of(settings: Settings) -> Accounts:
    """The accounts the settings describe: `DCB_CONFIG`'s file (its references resolved in
    this process's environment) or the implicit account. Raises `SettingsError`."""
    if settings.config is None:
        return Accounts.implicit(settings)
    return read_accounts(settings.config, settings, os.environ)


def build_service(
    settings: Settings,
    runtime: Runtime | None = None,
    *,
    web: bool = True,
    workers: int = 1,
    accounts: Accounts | None = None,
    tokens: TokenSource | None = None,
    portals: PortalDirectory | None = None,
) -> Service:
    """The running connector's parts, wired; nothing started yet.

    `web` builds the HTTP app's intake; `workers` is how many processor loops to run (0 for
    a web-only process: `dcb web`). Dispatchers run wherever processors do, one per
    (account, platform). `accounts` defaults to what the settings describe (`accounts_of`);
    `tokens` resolves credentials kept in the token store; `portals` names the accounts of
    public-app installs (default: those `dcb.toml` lists).
    """
    rt = runtime or Runtime()
    group = accounts if accounts is not None else accounts_of(settings)
    tokens = tokens if tokens is not None else token_source(settings)
    library, fallback = load_rules(settings)
    rulesets = _rulesets(group, library, {settings.rules: fallback})
    windows = {a.name: a.settings.abandon_after for a in group}
    shared = Shared.from_settings(settings)
    store = open_store(settings, shared)
    metrics = Metrics(store.depth)
    clients: AccountClients = {}
    if workers:
        for account in group:
            clients[account.name] = build_clients(
                account.settings, rt, shared, account=account, tokens=tokens
            )
    instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    processors = [
        Processor(
            store,
            rulesets.__getitem__,
            library.renderer,
            rt.clock,
            consumer=f"{instance}-{n}",
            abandon_after=settings.abandon_after,
            abandon_after_for=windows.get,
            on_decided=metrics.decided,
        )
        for n in range(workers)
    ]
    reports = {
        name: RuntimeReport(name, {p: pauses for p, (_, pauses) in platforms.items()}, rt.epoch)
        for name, platforms in clients.items()
    }
    revalidation = Revalidation(store, rulesets.__getitem__, rt.clock)
    dispatchers = []
    for account in group:
        report = reports.get(account.name)
        for platform, (client, pauses) in clients.get(account.name, {}).items():

            def settled(settlements: Sequence[Settlement], report: Any = report) -> None:
                metrics.settled(settlements, rt.epoch())
                report.settled(settlements)

            dispatchers.append(
                Dispatcher(
                    store,
                    account.name,
                    platform,
                    Deliverer(client, pauses, sleep=rt.sleep, random=rt.random).deliver,
                    client.max_batch,
                    rt.epoch,
                    flush_seconds=settings.flush_ms / 1000,
                    pace_seconds=PACE_SECONDS[platform](account.settings),
                    on_settled=settled,
                    still_valid=revalidation.still_valid,
                    redecide=revalidation.redecide,
                )
            )
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

    app = create_app(
        build_endpoints(group, portals) if web else [],
        intake,
        ready=ready,
        metrics=metrics.exposition,
        clock=rt.clock,
        observer=Observer(answered),
    )
    service = Service(
        app=app,
        processors=processors,
        dispatchers=dispatchers,
        reclaim=store.release_leases,
        upkeep=lambda: log.info("expired %d dedup keys", store.expire_dedup(rt.epoch())),
        close=store.close,
        fire_timers=lambda: store.fire_timers(rt.epoch()),
        publish=lambda: _publish(store, reports),
    )
    service_ref.append(service)
    app.extensions["dcb"] = {
        "service": service,
        "store": store,
        "clients": clients,
        "accounts": group,
    }
    return service


def _rulesets(
    group: Accounts, library: BlockLibrary, loaded: dict[Any, RuleSet]
) -> dict[str, RuleSet]:
    """Each account's rule set (each file loaded once); raises `DocumentError`."""
    found = {}
    for account in group:
        path = account.settings.rules
        if path not in loaded:
            loaded[path] = load_ruleset_file(path, library.catalogue)
        found[account.name] = loaded[path]
    return found


def _publish(store: Store, reports: Mapping[str, RuntimeReport]) -> None:
    for name, report in reports.items():
        store.save_runtime(name, report.snapshot())
