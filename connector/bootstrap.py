"""The composition root: real objects from one `Settings`, wired together.

Nothing else builds the service. Tests call `build_service` with their own settings
(pointing at fake platform APIs) and, where they need it, their own clock. Its parts are
built by `connector.runtime` (the injected world, the shared state and the store),
`connector.clients` (platform clients per account) and `connector.oauth_setup` (public
apps' installs and tokens).

Every account gets its own clients, rate limiter and pause book per platform, its own rule
set and abandonment window, and its own dispatcher thread per platform: one account's
429s, outage or backlog never hold another's writes.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from adapters.storage.redis_status import redis_health
from blocks.loading import BlockLibrary, load_library
from connector.accounts import Accounts, read_accounts
from connector.clients import (
    FETCH_THREADS,
    PACE_SECONDS,
    AccountClients,
    build_clients,
    build_late_data,
)
from connector.core.delivery import Deliverer
from connector.core.dispatch import Dispatcher
from connector.core.intake import Intake
from connector.core.ports import (
    PortalDirectory,
    TokenSource,
)
from connector.core.processing import Processor
from connector.core.rules import RuleSet
from connector.core.storage import Settlement
from connector.core.validity import Revalidation
from connector.endpoints import ACCOUNT, build_endpoints, build_pull, build_sites
from connector.installs import InstalledPortals
from connector.metrics import Metrics
from connector.oauth_setup import account_tokens, install_flows, open_grants
from connector.pull import open_pull
from connector.rulesets import load_ruleset_file
from connector.runtime import STORE_FILE, Runtime, Shared, Store, open_store
from connector.runtime_report import RuntimeReport
from connector.service import Service
from connector.settings import Settings
from webhooks.app import Observer, create_app
from webhooks.oauth import (
    InstallFlow,
    add_install_routes,
)
from webhooks.pull import add_pull_route
from webhooks.site import install_site

log = logging.getLogger("dcb")


def load_rules(settings: Settings) -> tuple[BlockLibrary, RuleSet]:
    """The block library and the rule set; raises `DocumentError` naming file and line."""
    library = load_library(settings.blocks_dir)
    return library, load_ruleset_file(settings.rules, library.catalogue)


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
