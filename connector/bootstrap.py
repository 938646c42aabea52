"""The composition root: real objects from one `Settings`, wired together.

Nothing else builds clients, stores or the app. Tests call `build_service` with their own
settings (pointing at fake platform APIs) and, where they need it, their own clock.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from adapters.storage.sqlite import SqlitePipelineStore
from blocks.loading import BlockLibrary, load_library
from connector.core.delivery import Deliverer
from connector.core.dispatch import Dispatcher
from connector.core.intake import Intake
from connector.core.pauses import Pauses
from connector.core.ports import PlatformClient, ProvisionReport
from connector.core.processing import Processor
from connector.core.rules import RuleSet
from connector.endpoints import ACCOUNT, build_endpoints
from connector.manifest import load_manifest
from connector.metrics import Metrics
from connector.rulesets import load_ruleset_file
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


def open_store(settings: Settings) -> SqlitePipelineStore:
    """The pipeline store the settings name (the embedded SQLite file)."""
    return SqlitePipelineStore(settings.data_dir / STORE_FILE, settings.queue_limit)


def load_rules(settings: Settings) -> tuple[BlockLibrary, RuleSet]:
    """The block library and the rule set; raises `DocumentError` naming file and line."""
    library = load_library(settings.blocks_dir)
    return library, load_ruleset_file(settings.rules, library.catalogue)


def hubspot_client(
    settings: Settings, token: str, runtime: Runtime
) -> tuple[HubSpotClient, Pauses]:
    """A HubSpot client for `token` (provisioning the manifest's properties), its pauses."""
    pauses = Pauses(runtime.epoch)
    gate = hubspot_throttle(pauses, runtime.sleep, runtime.epoch, settings.hubspot_rate)
    client = HubSpotClient(
        token,
        base_url=settings.hubspot_api_url,
        gate=gate,
        schema=load_manifest().property_schema,
        clock=runtime.epoch,
    )
    return client, pauses


def klaviyo_client(
    settings: Settings, key: str, runtime: Runtime
) -> tuple[KlaviyoClient, Pauses]:
    """A Klaviyo client for the private API `key`, and its pauses."""
    pauses = Pauses(runtime.epoch)
    gate = klaviyo_throttle(pauses, runtime.sleep, runtime.epoch)
    client = KlaviyoClient(key, base_url=settings.klaviyo_api_url, gate=gate, sleep=runtime.sleep)
    return client, pauses


def build_clients(settings: Settings, runtime: Runtime) -> dict[str, tuple[PlatformClient, Pauses]]:
    """One client per configured platform, each with the account's pauses and rate gate."""
    clients: dict[str, tuple[PlatformClient, Pauses]] = {}
    if settings.hubspot_access_token is not None:
        clients["hubspot"] = hubspot_client(settings, settings.hubspot_access_token.value, runtime)
    if settings.klaviyo_api_key is not None:
        clients["klaviyo"] = klaviyo_client(settings, settings.klaviyo_api_key.value, runtime)
    return clients


def provision(clients: dict[str, tuple[PlatformClient, Pauses]]) -> dict[str, ProvisionReport]:
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


def build_service(settings: Settings, runtime: Runtime | None = None) -> Service:
    """Every part of the running connector, wired; nothing started yet."""
    rt = runtime or Runtime()
    library, ruleset = load_rules(settings)
    store = open_store(settings)
    metrics = Metrics()
    clients = build_clients(settings, rt)
    consumer = f"processor-{uuid.uuid4().hex[:8]}"
    processor = Processor(
        store,
        lambda _account: ruleset,
        library.renderer,
        rt.clock,
        consumer=consumer,
        on_decided=metrics.decided,
    )
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
            on_settled=lambda s: metrics.settled(s, rt.epoch()),
        )
        for platform, (client, pauses) in clients.items()
    ]
    intake = Intake(store, rt.clock)

    def ready() -> tuple[bool, dict[str, Any]]:
        try:
            store.ping()
        except Exception as exc:  # any store failure means not ready
            return False, {"store": f"unreachable: {type(exc).__name__}"}
        return True, {"store": "ok"}

    def exposition() -> tuple[bytes, str]:
        metrics.queue_depth.set(store.depth())
        return metrics.exposition()

    service_ref: list[Service] = []

    def answered(endpoint: str, status: int, seconds: float) -> None:
        metrics.answered(endpoint, status, seconds)
        if status in (200, 202) and service_ref:
            service_ref[0].events_arrived()

    app = create_app(
        build_endpoints(settings),
        intake,
        ready=ready,
        metrics=exposition,
        clock=rt.clock,
        observer=Observer(answered),
    )
    service = Service(
        app=app,
        processor=processor,
        dispatchers=dispatchers,
        reclaim=store.release_leases,
        upkeep=lambda: log.info("expired %d dedup keys", store.expire_dedup(rt.epoch())),
        close=store.close,
        status=lambda: store.status(rt.epoch()),
    )
    service_ref.append(service)
    app.extensions["dcb"] = {"service": service, "store": store, "clients": clients}
    return service
