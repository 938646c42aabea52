"""The composition root: real objects from one `Settings`, wired together.

Nothing else builds clients, stores or the app. Tests call `build_service` with their own
settings (pointing at fake platform APIs) and, where they need it, their own clock.

Every account gets its own clients, rate limiter and pause book per platform, its own rule
set and abandonment window, and its own dispatcher thread per platform: one account's
429s, outage or backlog never hold another's writes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Flask

from adapters.hubspot.client import HubSpotClient, TokenProvider, hubspot_throttle
from adapters.hubspot.oauth import HubSpotOAuthApi, OAuthClientConfig
from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from adapters.klaviyo.oauth import KlaviyoOAuthApi, KlaviyoOAuthConfig
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
from connector.accounts import Account, Accounts, read_accounts
from connector.core.delivery import Deliverer
from connector.core.dispatch import Dispatcher
from connector.core.intake import Intake
from connector.core.late_data import LateData, Submit
from connector.core.oauth import (
    InstallConfig,
    InstallRefused,
    OAuthApp,
    OAuthInstall,
    OAuthTokens,
)
from connector.core.pauses import PauseBook, Pauses
from connector.core.ports import (
    PlatformClient,
    PortalDirectory,
    ProfileSource,
    ProvisionReport,
    TokenSource,
)
from connector.core.processing import Processor
from connector.core.ratelimit import FixedWindowLimiter, RateLimiter
from connector.core.rules import RuleSet
from connector.core.storage import Settlement
from connector.core.validity import Revalidation
from connector.endpoints import ACCOUNT, build_endpoints, build_pull, build_sites
from connector.installs import AccountTokens, InstalledPortals
from connector.manifest import load_manifest
from connector.metrics import Metrics
from connector.pull import open_pull
from connector.rulesets import load_ruleset_file
from connector.runtime_report import RuntimeReport
from connector.service import Service
from connector.settings import Secret, Settings, SettingsError
from webhooks.app import Observer, create_app
from webhooks.oauth import (
    PLATFORM_NAMES,
    InstallFlow,
    InstallPage,
    add_install_routes,
    start_path,
)
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


def oauth_apps(settings: Settings, app_secrets: Sequence[Secret]) -> dict[str, OAuthApp]:
    """Each platform's public (OAuth) app that is configured, by platform: HubSpot's with
    `DCB_HUBSPOT_CLIENT_ID` and its client secret (`app_secrets`:
    `Accounts.oauth_app_secrets`), Klaviyo's with `DCB_KLAVIYO_CLIENT_ID` and
    `DCB_KLAVIYO_CLIENT_SECRET`."""
    apps: dict[str, OAuthApp] = {}
    if settings.hubspot_client_id is not None and app_secrets:
        apps["hubspot"] = HubSpotOAuthApi(
            OAuthClientConfig(
                settings.hubspot_client_id, app_secrets[0].value, settings.hubspot_api_url
            )
        )
    if settings.klaviyo_client_id is not None and settings.klaviyo_client_secret is not None:
        apps["klaviyo"] = KlaviyoOAuthApi(
            KlaviyoOAuthConfig(
                settings.klaviyo_client_id,
                settings.klaviyo_client_secret.value,
                settings.klaviyo_api_url,
            )
        )
    return apps


def account_tokens(accounts: Accounts, grants: Grants, runtime: Runtime) -> AccountTokens | None:
    """The accounts' view of the OAuth token store: stored tokens, refreshed through each
    platform's token endpoint when due (None without a public app)."""
    apps = oauth_apps(accounts.settings, accounts.oauth_app_secrets)
    if not apps:
        return None
    tokens = {
        platform: OAuthTokens(
            grants, app, runtime.epoch, platform=platform, install_path=start_path(platform)
        )
        for platform, app in apps.items()
    }
    return AccountTokens(tokens, accounts)


def install_flows(
    settings: Settings,
    grants: Grants,
    installs: AccountTokens,
    runtime: Runtime,
    app_secrets: Sequence[Secret],
) -> dict[str, InstallFlow]:
    """Each public app's install routes' service, wired: state (and PKCE), code exchange,
    storage, provisioning of the new account."""
    first_key = settings.secret_keys[0].value.encode()
    signing_key = hashlib.sha256(b"dcb-oauth-state:" + first_key).digest()
    secure = (settings.public_url or "").startswith("https://")
    manifest = load_manifest()
    flows = {}
    for platform, app in oauth_apps(settings, app_secrets).items():
        if platform == "hubspot":
            redirect, scopes = settings.hubspot_redirect_uri, settings.hubspot_scopes
            scopes = scopes or manifest.hubspot.scopes
        else:
            redirect, scopes = settings.klaviyo_redirect_uri, settings.klaviyo_scopes
            scopes = scopes or manifest.klaviyo.scopes
        config = InstallConfig(redirect or "", scopes, signing_key)
        provision = _provisioner(settings, installs.apps[platform], runtime)
        install = OAuthInstall(
            config, app, grants, provision, runtime.epoch, lambda: secrets.token_urlsafe(24)
        )
        flows[platform] = _flow(install, secure)
    return flows


def _provisioner(
    settings: Settings, tokens: OAuthTokens, runtime: Runtime
) -> Callable[[str], ProvisionReport]:
    """Provisioning (HubSpot's properties) or the access check (Klaviyo) of a new
    install's account, with its fresh token."""

    def provision(grant: str) -> ProvisionReport:
        def provider(force_refresh: bool = False, stale: str | None = None) -> str:
            return tokens.token(grant, force_refresh=force_refresh, stale=stale)

        if tokens.platform == "hubspot":
            return hubspot_client(settings, provider, runtime)[0].provision()
        return klaviyo_client(settings, provider, runtime)[0].provision()

    return provision


def _flow(install: OAuthInstall, secure: bool) -> InstallFlow:
    hubspot = install.platform == "hubspot"
    what = "HubSpot portal" if hubspot else f"{PLATFORM_NAMES[install.platform]} account"
    ready = (
        "its dcb_* contact properties are ready"
        if hubspot
        else "the connector can write its profiles' dcb_* properties"
    )

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
                f"{what} {done.account_id} is connected, but its check failed "
                f"({'; '.join(done.provisioning.problems)}); the connector tries again at "
                "its next start."
            )
        else:
            detail = f"{what} {done.account_id} is connected and {ready}. You can close this page."
        return InstallPage(True, "The app is installed", detail)

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
    account: str = ACCOUNT,
) -> tuple[HubSpotClient, PauseBook]:
    """A HubSpot client for `token`, a private app's or an OAuth token provider
    (provisioning the manifest's properties), and its pauses."""
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
    key: str | TokenProvider,
    runtime: Runtime,
    shared: Shared | None = None,
    account: str = ACCOUNT,
) -> tuple[KlaviyoClient, PauseBook]:
    """A Klaviyo client for `key`, a private API key or an OAuth token provider, and its
    pauses."""
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
    with the account's own pauses and rate gate. A token kept in the OAuth token store is
    asked for at each call (so it is refreshed when due); a platform whose credential is
    in a store and not there yet gets no client."""
    who = account or Account(ACCOUNT, settings)
    clients: Clients = {}
    for platform in who.platforms:
        token: str | TokenProvider | None = who.access_token(platform, None)
        if token is None and isinstance(tokens, AccountTokens) and platform in tokens.apps:
            token = tokens.provider(who.name, platform)
        elif token is None:
            token = who.access_token(platform, tokens)
        if token is None:
            log.warning("account %s: no %s access token in the token store", who.name, platform)
            continue
        if platform == "hubspot":
            clients[platform] = hubspot_client(who.settings, token, runtime, shared, who.name)
        else:
            clients[platform] = klaviyo_client(who.settings, token, runtime, shared, who.name)
    return clients


def build_late_data(
    settings: Settings, clients: AccountClients, store: Store, runtime: Runtime, submit: Submit
) -> LateData | None:
    """What reads a delayed decision's missing fields from the platforms (each account's
    write clients, so reads share their rate limits and pauses); None with no platform."""
    sources: dict[str, dict[str, ProfileSource]] = {
        account: {
            platform: client
            for platform, (client, _) in platforms.items()
            if isinstance(client, HubSpotClient | KlaviyoClient)
        }
        for account, platforms in clients.items()
    }
    if not any(sources.values()):
        return None
    return LateData(
        sources,
        submit,
        store,
        runtime.clock,
        budget=settings.fetch_budget_ms / 1000,
        ttl=settings.fetch_ttl,
    )


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


def token_source(accounts: Accounts) -> TokenSource | None:
    """For the `dcb accounts` commands: the encrypted token store, for credentials kept
    there (`access_token = { store = "oauth" }`); None without a public app. Raises
    `SettingsError` when stored tokens cannot be read with `DCB_SECRET_KEY`."""
    grants = open_grants(accounts.settings)  # open for the life of the command
    return account_tokens(accounts, grants, Runtime())


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
    library, fallback = load_rules(settings)
    rulesets = _rulesets(group, library, {settings.rules: fallback})
    windows = {a.name: a.settings.abandon_after for a in group}
    shared = Shared.from_settings(settings)
    grants = open_grants(settings, shared)
    installs = account_tokens(group, grants, rt)
    tokens = tokens if tokens is not None else installs
    if portals is None and installs is not None:
        portals = InstalledPortals(installs)
    store = open_store(settings, shared)
    metrics = Metrics(store.depth)
    clients: AccountClients = {}
    if workers:
        for account in group:
            clients[account.name] = build_clients(
                account.settings, rt, shared, account=account, tokens=tokens
            )
    instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    fetches = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="dcb-fetch")
    late_data = build_late_data(settings, clients, store, rt, fetches.submit)
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
            late_data=late_data,
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

    flows: dict[str, InstallFlow] = {}
    if web and installs is not None and settings.secret_keys:
        flows = install_flows(settings, grants, installs, rt, group.oauth_app_secrets)
    pull = None
    if web:
        served = {a.name: (rulesets[a.name], a.settings) for a in group}
        served.setdefault(ACCOUNT, (fallback, settings))  # the environment's, even idle
        pull = open_pull(
            settings, store, shared.redis, shared.keys, settings.data_dir / STORE_FILE,
            library, served, metrics, rt.clock,
        )  # fmt: skip

    def extra_routes(app: Flask) -> None:
        if flows:
            add_install_routes(app, flows)
        if pull is not None:
            route = build_pull(settings, pull.service.lookup)
            add_pull_route(app, route, epoch=rt.epoch, answered=metrics.answered)

    app = create_app(
        build_endpoints(group, portals) if web else [],
        intake,
        ready=ready,
        metrics=metrics.exposition,
        clock=rt.clock,
        observer=Observer(answered),
        extra=extra_routes,
    )
    if web:
        sites = build_sites(group, shared.browser_limits(settings, rt))
        install_site(app, sites, intake, clock=rt.clock, observer=Observer(answered))

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
        publish=lambda: _publish(store, reports),
    )
    service_ref.append(service)
    app.extensions["dcb"] = {
        "service": service,
        "store": store,
        "clients": clients,
        "grants": grants,
        "tokens": installs.tokens if installs is not None else None,
        "installs": installs,
        "pull": pull,
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
