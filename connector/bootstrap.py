"""The composition root: real objects from one `Settings`, wired together.

Nothing else builds clients, stores or the app. Tests call `build_service` with their own
settings (pointing at fake platform APIs) and, where they need it, their own clock.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Flask

from adapters.hubspot.client import HubSpotClient, TokenProvider, hubspot_throttle
from adapters.hubspot.install import HubSpotInstall, InstallConfig, InstallRefused
from adapters.hubspot.oauth import HubSpotOAuthApi, HubSpotTokens, OAuthClientConfig
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
from adapters.storage.token_store import (
    RedisGrantStore,
    SecretKeyError,
    SqliteGrantStore,
    TokenCipher,
)
from blocks.loading import BlockLibrary, load_library
from connector.core.delivery import Deliverer
from connector.core.dispatch import Dispatcher
from connector.core.intake import Intake
from connector.core.late_data import LateData, Submit
from connector.core.pauses import PauseBook, Pauses
from connector.core.ports import PlatformClient, ProfileSource, ProvisionReport
from connector.core.processing import Processor
from connector.core.ratelimit import FixedWindowLimiter, RateLimiter
from connector.core.rules import RuleSet
from connector.core.storage import Settlement
from connector.core.tokens import TokenUnavailable, hubspot_account
from connector.core.validity import Revalidation
from connector.endpoints import ACCOUNT, build_endpoints, build_pull, build_site
from connector.manifest import load_manifest
from connector.metrics import Metrics
from connector.pull import open_pull
from connector.rulesets import load_ruleset_file
from connector.runtime_report import RuntimeReport
from connector.service import Service
from connector.settings import Settings, SettingsError
from webhooks.app import Observer, create_app
from webhooks.oauth import START_PATH, InstallFlow, InstallPage, add_install_routes
from webhooks.pull import add_pull_route
from webhooks.site import RateLimits, install_site

log = logging.getLogger("dcb")

STORE_FILE = "dcb.sqlite3"
#: Profile reads in flight at once (late and missing data); more wait their turn.
FETCH_THREADS = 8
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


Grants = SqliteGrantStore | RedisGrantStore


def open_grants(settings: Settings, shared: Shared | None = None) -> Grants:
    """The encrypted OAuth token store, beside the pipeline's data. Raises `SettingsError`
    when tokens are stored and no key in `DCB_SECRET_KEY` reads them: never a traceback,
    never a key generated here."""
    backend = shared or Shared.from_settings(settings)
    cipher = TokenCipher([k.value for k in settings.secret_keys]) if settings.secret_keys else None
    grants: Grants
    if backend.redis is not None:
        grants = RedisGrantStore(backend.redis, backend.keys, cipher)
    else:
        grants = SqliteGrantStore(settings.data_dir / STORE_FILE, cipher)
    try:
        grants.check()
    except SecretKeyError as exc:
        grants.close()
        raise SettingsError([str(exc)]) from None
    return grants


def hubspot_tokens(settings: Settings, grants: Grants, runtime: Runtime) -> HubSpotTokens:
    """Stored OAuth tokens, refreshed through HubSpot's token endpoint when due."""
    config = OAuthClientConfig(
        client_id=settings.hubspot_client_id or "",
        client_secret=settings.hubspot_client_secrets[0].value,
        base_url=settings.hubspot_api_url,
    )
    return HubSpotTokens(grants, HubSpotOAuthApi(config), runtime.epoch)


def installed_portal_tokens(settings: Settings, tokens: HubSpotTokens) -> TokenProvider:
    """The token provider of this (single) account: the portal `DCB_HUBSPOT_PORTAL_ID`
    names, else the one portal that installed the app. Until there is one, writes wait."""

    def provider(force_refresh: bool = False, stale: str | None = None) -> str:
        if settings.hubspot_portal_id is not None:
            account = hubspot_account(settings.hubspot_portal_id)
        else:
            portals = sorted(tokens.installed_portals())
            if not portals:
                raise TokenUnavailable(
                    "no HubSpot portal has installed the app yet (open "
                    f"{settings.public_url or ''}{START_PATH})"
                )
            if len(portals) > 1:
                raise TokenUnavailable(
                    f"{len(portals)} portals installed the app: set DCB_HUBSPOT_PORTAL_ID "
                    "to the one this connector writes to"
                )
            account = hubspot_account(portals[0])
        return tokens.token(account, force_refresh=force_refresh, stale=stale)

    return provider


def install_flow(
    settings: Settings, grants: Grants, tokens: HubSpotTokens, runtime: Runtime
) -> InstallFlow:
    """The OAuth install routes' service, wired: state, code exchange, storage, provisioning."""
    first_key = settings.secret_keys[0].value.encode()
    config = InstallConfig(
        client_id=settings.hubspot_client_id or "",
        redirect_uri=settings.hubspot_redirect_uri or "",
        scopes=settings.hubspot_scopes or load_manifest().hubspot.scopes,
        signing_key=hashlib.sha256(b"dcb-oauth-state:" + first_key).digest(),
    )
    api = HubSpotOAuthApi(
        OAuthClientConfig(
            config.client_id, settings.hubspot_client_secrets[0].value, settings.hubspot_api_url
        )
    )

    def provision_portal(account: str) -> ProvisionReport:
        def provider(force_refresh: bool = False, stale: str | None = None) -> str:
            return tokens.token(account, force_refresh=force_refresh, stale=stale)

        client, _ = hubspot_client(settings, provider, runtime)
        return client.provision()

    install = HubSpotInstall(config, api, grants, provision_portal, runtime.epoch)

    def start() -> tuple[str, str]:
        started = install.start()
        return started.url, started.state

    def finish(code: str | None, state: str | None, cookie: str | None) -> InstallPage:
        try:
            done = install.finish(code, state, cookie)
        except InstallRefused as exc:
            return InstallPage(False, "The app was not installed", str(exc))
        if done.provisioning.problems:
            detail = (
                f"HubSpot portal {done.portal_id} is connected, but its dcb_* properties could "
                f"not all be created ({'; '.join(done.provisioning.problems)}); the connector "
                "tries again at its next start."
            )
        else:
            detail = (
                f"HubSpot portal {done.portal_id} is connected and its dcb_* contact "
                "properties are ready. You can close this page."
            )
        return InstallPage(True, "The app is installed", detail)

    secure = (settings.public_url or "").startswith("https://")
    return InstallFlow(start, finish, secure_cookie=secure)


def load_rules(settings: Settings) -> tuple[BlockLibrary, RuleSet]:
    """The block library and the rule set; raises `DocumentError` naming file and line."""
    library = load_library(settings.blocks_dir)
    return library, load_ruleset_file(settings.rules, library.catalogue)


def hubspot_client(
    settings: Settings,
    token: str | TokenProvider,
    runtime: Runtime,
    shared: Shared | None = None,
) -> tuple[HubSpotClient, PauseBook]:
    """A HubSpot client for `token`, a private app's or an OAuth token provider
    (provisioning the manifest's properties), and its pauses."""
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


def build_clients(
    settings: Settings,
    runtime: Runtime,
    shared: Shared | None = None,
    tokens: HubSpotTokens | None = None,
) -> Clients:
    """One client per configured platform, each with the account's pauses and rate gate
    (HubSpot's through the public app's stored tokens when `tokens` is given)."""
    clients: Clients = {}
    if settings.hubspot_access_token is not None:
        token = settings.hubspot_access_token.value
        clients["hubspot"] = hubspot_client(settings, token, runtime, shared)
    elif tokens is not None:
        provider = installed_portal_tokens(settings, tokens)
        clients["hubspot"] = hubspot_client(settings, provider, runtime, shared)
    if settings.klaviyo_api_key is not None:
        key = settings.klaviyo_api_key.value
        clients["klaviyo"] = klaviyo_client(settings, key, runtime, shared)
    return clients


def build_late_data(
    settings: Settings, clients: Clients, store: Store, runtime: Runtime, submit: Submit
) -> LateData | None:
    """What reads a delayed decision's missing fields from the platforms (the write
    clients, so reads share their rate limits and pauses); None with no platform."""
    sources: dict[str, ProfileSource] = {
        platform: client
        for platform, (client, _) in clients.items()
        if isinstance(client, HubSpotClient | KlaviyoClient)
    }
    if not sources:
        return None
    return LateData(
        sources,
        submit,
        store,
        runtime.clock,
        budget=settings.fetch_budget_ms / 1000,
        ttl=settings.fetch_ttl,
    )


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
    grants = open_grants(settings, shared)
    tokens = hubspot_tokens(settings, grants, rt) if settings.hubspot_oauth else None
    store = open_store(settings, shared)
    metrics = Metrics(store.depth)
    clients = build_clients(settings, rt, shared, tokens) if workers else {}
    instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    fetches = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="dcb-fetch")
    late_data = build_late_data(settings, clients, store, rt, fetches.submit)
    processors = [
        Processor(
            store,
            lambda _account: ruleset,
            library.renderer,
            rt.clock,
            consumer=f"{instance}-{n}",
            abandon_after=settings.abandon_after,
            on_decided=metrics.decided,
            late_data=late_data,
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

    flow = install_flow(settings, grants, tokens, rt) if web and tokens is not None else None
    pull = None
    if web:
        pull = open_pull(
            settings, store, shared.redis, shared.keys, settings.data_dir / STORE_FILE,
            library, ruleset, metrics, rt.clock,
        )  # fmt: skip

    def extra_routes(app: Flask) -> None:
        if flow is not None:
            add_install_routes(app, flow)
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
        extra=extra_routes,
    )
    if web:
        site = build_site(settings, shared.browser_limits(settings, rt))
        install_site(app, site, intake, clock=rt.clock, observer=Observer(answered))

    def upkeep() -> None:
        log.info("expired %d dedup keys", store.expire_dedup(rt.epoch()))
        if pull is not None:
            ttl = settings.pull_cache_ttl.total_seconds()
            log.info("expired %d cached decisions", pull.expire(rt.epoch() - ttl))

    def close() -> None:
        fetches.shutdown(wait=False, cancel_futures=True)  # a late answer is retried anyway
        if pull is not None:
            pull.close()
        store.close()
        grants.close()

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
        "grants": grants,
        "tokens": tokens,
        "pull": pull,
    }
    return service
