"""Platform clients, built per account: each with the account's own pauses and rate gate,
the late-data readers made of them, and provisioning across accounts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from adapters.hubspot.client import HubSpotClient, TokenProvider, hubspot_throttle
from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from connector.accounts import Account
from connector.core.late_data import LateData, Submit
from connector.core.pauses import PauseBook
from connector.core.ports import (
    PlatformClient,
    ProfileSource,
    ProvisionReport,
    TokenSource,
)
from connector.endpoints import ACCOUNT
from connector.installs import AccountTokens
from connector.manifest import load_manifest
from connector.runtime import Runtime, Shared, Store
from connector.settings import Settings

log = logging.getLogger("dcb")

#: Profile reads in flight at once (late and missing data); more wait their turn.
FETCH_THREADS = 8


#: The least time between two calls carrying a partial batch: the documented steady rate
#: (HubSpot: DCB_HUBSPOT_RATE calls per rolling 10 s; Klaviyo profile-import: 700/min).
PACE_SECONDS: dict[str, Callable[[Settings], float]] = {
    "hubspot": lambda s: 10.0 / s.hubspot_rate,
    "klaviyo": lambda _s: 60.0 / 700,
}


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
