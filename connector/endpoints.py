"""The inbound routes, each wired with its verification, parser and routing for every account.

What verified a request decides its account: a HubSpot private app's client secret, a
Klaviyo system webhook's signing secret, a Klaviyo flow token, a first-party API key
(no two accounts share one, `connector.accounts` checks). HubSpot's public app has one
client secret for every portal: its signature proves the app, and each event then goes
to the account of its `portalId` (a `PortalDirectory`: the configured installs unless
one is plugged in). Events that name another platform account than the one the request
verified for (a foreign `portalId` or `meta.klaviyo_account_id`) are dropped; a request
none of whose events is for an account it may touch is refused (403).

A platform no account is configured for is off: its routes answer 404 with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from urllib.parse import parse_qs

from adapters.hubspot.inbound import parse_app_webhook
from adapters.hubspot.inbound_mapping import PropertyEvent
from adapters.hubspot.inbound_workflow import parse_workflow_webhook
from adapters.klaviyo.inbound import parse_flow_webhook, parse_system_webhook
from connector.accounts import IMPLICIT, PUBLIC, Account, Accounts
from connector.core.events import Event, EventType
from connector.core.inbound import Dropped, EraseRequest, ParseError, ParseResult
from connector.core.intake import Routed, parse_first_party
from connector.core.lookup import PullResult
from connector.core.ports import PortalDirectory
from connector.settings import Secret, Settings
from webhooks.app import Endpoint, RawRequest, Refused
from webhooks.bearer import verify_bearer
from webhooks.pull import PullRoute
from webhooks.signatures import (
    Failure,
    SignatureError,
    hubspot_uri,
    verify_hubspot,
    verify_klaviyo,
    verify_klaviyo_flow,
)
from webhooks.signed_urls import Access, verify_access
from webhooks.site import RateLimits, Site, Sites

#: The single-account connector's account (the environment's).
ACCOUNT = IMPLICIT
#: What `verify` returns for a request signed by the public HubSpot app: not an account
#: yet (no account name can look like it); routing picks one per event by `portalId`.
PUBLIC_APP = "@hubspot-app"
KLAVIYO_SYSTEM_MAX_BODY = 8 * 1024 * 1024

#: One account's way to check a request: raises `SignatureError` unless it is the account's.
Check = Callable[[RawRequest, datetime, Sequence[str]], None]


@dataclass(frozen=True)
class ConfiguredPortals:
    """`PortalDirectory` over the public-app installs listed in `dcb.toml`."""

    accounts: Mapping[str, str]  # portal id -> account name

    def account_for(self, portal_id: str) -> str | None:
        return self.accounts.get(portal_id)


def build_endpoints(
    accounts: Accounts | Settings, portals: PortalDirectory | None = None
) -> list[Endpoint]:
    """Every inbound route, for every account (a `Settings`: its implicit account)."""
    group = accounts if isinstance(accounts, Accounts) else Accounts.implicit(accounts)
    return [*_hubspot(group, portals), *_klaviyo(group), _first_party(group)]


def _values(values: tuple[Secret, ...]) -> list[str]:
    return [secret.value for secret in values]


def _first_verifying(
    candidates: Sequence[tuple[str, list[str]]], check: Check, none: str
) -> Callable[[RawRequest, datetime], str]:
    """A `Verify` returning the account whose own secrets verify the request."""

    def verify(raw: RawRequest, now: datetime) -> str:
        failure: SignatureError | None = None
        for account, secrets in candidates:
            try:
                check(raw, now, secrets)
                return account
            except SignatureError as exc:
                failure = failure or exc
        raise failure or SignatureError(Failure.NO_SECRET, none)

    return verify


def _pinned(
    account: str, expected: str | None, platforms: tuple[str, ...], result: ParseResult
) -> list[Routed]:
    """The result for `account`, without the events of any platform account but
    `expected`; raises `Refused` when it carried some and all were another's."""
    if expected is None:
        return [Routed(account, platforms, result)]
    events = [e for e in result.events if e.context.get("account_id") in (None, expected)]
    erasures = [r for r in result.erasures if r.account_id in (None, expected)]
    foreign = len(result.events) - len(events) + len(result.erasures) - len(erasures)
    if foreign and not events and not erasures:
        raise Refused(f"every event is another platform account's than {account}'s ({expected})")
    dropped = [*result.dropped, *[Dropped(0, f"not this account's ({expected})")] * foreign]
    kept = replace(result, events=tuple(events), erasures=tuple(erasures), dropped=tuple(dropped))
    return [Routed(account, platforms, kept)]


def _by_portal(result: ParseResult, portals: PortalDirectory) -> list[Routed]:
    """The public app's request, split by the account of each event's `portalId`; raises
    `Refused` when no event is from a portal that installed the app."""
    shares: dict[str, tuple[list[Event], list[EraseRequest]]] = {}
    dropped = list(result.dropped)
    owner_of = cache(portals.account_for)  # one store read per portal, not per event
    for event in result.events:
        portal = event.context.get("account_id")
        owner = owner_of(str(portal)) if portal is not None else None
        if owner is None:
            dropped.append(Dropped(0, f"portal {portal} has not installed the app"))
        else:
            shares.setdefault(owner, ([], []))[0].append(event)
    for erasure in result.erasures:
        owner = owner_of(erasure.account_id) if erasure.account_id else None
        if owner is None:
            dropped.append(Dropped(0, f"portal {erasure.account_id} has not installed the app"))
        else:
            shares.setdefault(owner, ([], []))[1].append(erasure)
    if not shares and (result.events or result.erasures):
        raise Refused("no event is from a portal that installed the public app")
    if not shares:
        return [Routed(PUBLIC_APP, ("hubspot",), result)]  # nothing to queue: a 202 of zero
    parts = []
    for n, (owner, (events, erasures)) in enumerate(shares.items()):
        share = ParseResult(
            events=tuple(events),
            erasures=tuple(erasures),
            dropped=tuple(dropped) if n == 0 else (),  # the refusals are told once
            malformed=result.malformed if n == 0 else (),
        )
        parts.append(Routed(owner, ("hubspot",), share))
    return parts


def _event_type(query: bytes) -> EventType:
    """A workflow's event type from `?type=...` (default `profile_updated`)."""
    values = parse_qs(query.decode("latin-1")).get("type")
    if not values:
        return EventType.PROFILE_UPDATED
    try:
        return EventType(values[0])
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise ParseError("type", f"unknown event type {values[0]!r} (one of {known})") from None


def _hubspot(group: Accounts, portals: PortalDirectory | None) -> list[Endpoint]:
    on = [a for a in group if "hubspot" in a.platforms]
    private = [a for a in on if a.hubspot_app != PUBLIC and a.settings.hubspot_client_secrets]
    public = [a for a in on if a.hubspot_app == PUBLIC]
    candidates = [(a.name, _values(a.settings.hubspot_client_secrets)) for a in private]
    if public and group.hubspot_app_secrets:
        candidates.append((PUBLIC_APP, _values(group.hubspot_app_secrets)))
    off = None
    if not on:
        off = "HubSpot is not configured (set DCB_HUBSPOT_ACCESS_TOKEN)"
    elif not candidates:
        off = "HubSpot webhooks need DCB_HUBSPOT_CLIENT_SECRET"
    settings = group.settings  # signatures and property mapping are the connector's
    base = settings.public_url or ""
    directory = portals or ConfiguredPortals(
        {portal: a.name for a in public if (portal := a.account_id("hubspot")) is not None}
    )
    by_name = {a.name: a for a in on}
    mapping = {
        prop: PropertyEvent(EventType(kind), prop)
        for prop, kind in settings.hubspot_property_events.items()
    }

    def check(raw: RawRequest, now: datetime, secrets: Sequence[str]) -> None:
        uri = hubspot_uri(base, raw.path, raw.query_string)
        verify_hubspot(raw.headers, method=raw.method, uri=uri, body=raw.body, secrets=secrets,
                       now=now, allow_legacy=settings.hubspot_allow_legacy_signatures)  # fmt: skip

    def app(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_app_webhook(raw.body, received_at=now, property_events=mapping)

    def workflow(raw: RawRequest, now: datetime) -> ParseResult:
        kind = _event_type(raw.query_string)
        return parse_workflow_webhook(
            raw.body, received_at=now, event_type=kind, property_events=mapping
        )

    def route(account: str, result: ParseResult) -> list[Routed]:
        if account == PUBLIC_APP or (account == IMPLICIT and settings.hubspot_oauth):
            return _by_portal(result, directory)  # an install: only installed portals
        return _pinned(account, by_name[account].account_id("hubspot"), ("hubspot",), result)

    verify = _first_verifying(candidates, check, "no client secret is configured")
    return [
        Endpoint("/webhooks/hubspot", "hubspot", verify, app, ("hubspot",), off_reason=off,
                 route=route),
        Endpoint("/webhooks/hubspot/workflow", "hubspot_workflow", verify, workflow,
                 ("hubspot",), retry_after_ms=True, off_reason=off, route=route),
    ]  # fmt: skip


def _klaviyo(group: Accounts) -> list[Endpoint]:
    on = [a for a in group if "klaviyo" in a.platforms]
    system = [(a.name, _values(a.settings.klaviyo_webhook_secrets)) for a in on
              if a.settings.klaviyo_webhook_secrets]  # fmt: skip
    flow = [(a.name, _values(a.settings.klaviyo_flow_tokens)) for a in on
            if a.settings.klaviyo_flow_tokens]  # fmt: skip
    system_off = flow_off = None
    if not on:
        system_off = flow_off = "Klaviyo is not configured (set DCB_KLAVIYO_API_KEY)"
    if on and not system:
        system_off = "Klaviyo system webhooks need DCB_KLAVIYO_WEBHOOK_SECRET"
    if on and not flow:
        flow_off = "Klaviyo flow webhooks need DCB_KLAVIYO_FLOW_TOKEN"
    pins = {a.name: a.account_id("klaviyo") for a in on}

    def check_system(raw: RawRequest, now: datetime, secrets: Sequence[str]) -> None:
        verify_klaviyo(raw.headers, body=raw.body, secrets=secrets, now=now)

    def check_flow(raw: RawRequest, now: datetime, tokens: Sequence[str]) -> None:
        verify_klaviyo_flow(raw.headers, tokens=tokens)

    def parse_system(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_system_webhook(raw.body, received_at=now)

    def parse_flow(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_flow_webhook(raw.body, received_at=now)

    def route(account: str, result: ParseResult) -> list[Routed]:
        return _pinned(account, pins[account], ("klaviyo",), result)

    return [
        Endpoint(
            "/webhooks/klaviyo",
            "klaviyo",
            _first_verifying(system, check_system, "no webhook secret is configured"),
            parse_system,
            ("klaviyo",),
            max_body=KLAVIYO_SYSTEM_MAX_BODY,
            off_reason=system_off,
            route=route,
        ),
        Endpoint(
            "/webhooks/klaviyo/flow",
            "klaviyo_flow",
            _first_verifying(flow, check_flow, "no flow token is configured"),
            parse_flow,
            ("klaviyo",),
            off_reason=flow_off,
        ),
    ]


def _first_party(group: Accounts) -> Endpoint:
    keyed = [(a.name, _values(a.settings.events_api_keys)) for a in group
             if a.settings.events_api_keys]  # fmt: skip
    off = None if keyed else "the event API is off (set DCB_EVENTS_API_KEY)"
    platforms = {a.name: a.platforms for a in group}

    def check(raw: RawRequest, now: datetime, keys: Sequence[str]) -> None:
        verify_bearer(raw.headers, keys=keys)

    def parse(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_first_party(raw.body, received_at=now)

    def route(account: str, result: ParseResult) -> list[Routed]:
        return [Routed(account, platforms[account], result)]

    return Endpoint(
        "/v1/events",
        "events",
        _first_verifying(keyed, check, "no API key is configured"),
        parse,
        group.settings.platforms,
        require_event=True,
        off_reason=off,
        route=route,
    )


def build_sites(accounts: Accounts | Settings, limits: RateLimits) -> Sites:
    """The site snippet's browser path for every account with a publishable key. Browser
    events are queued for the account's platforms; the processor writes them only where
    the profile is known."""
    group = accounts if isinstance(accounts, Accounts) else Accounts.implicit(accounts)
    members = tuple(
        Site(
            account=a.name,
            platforms=a.platforms,
            publishable_keys=a.settings.publishable_keys,
            allowed_origins=frozenset(a.settings.allowed_origins),
            shop_domains=a.settings.url_domains,
            identity_secrets=tuple(_values(a.settings.identity_secrets)),
        )
        for a in group
        if a.settings.site_enabled
    )
    off = None
    if not members:
        off = "the site snippet is off (set DCB_PUBLISHABLE_KEY and DCB_ALLOWED_ORIGINS)"
    return Sites(members, limits, group.settings.behind_proxy, off)


def build_pull(settings: Settings, lookup: Callable[[str, str, str], PullResult]) -> PullRoute:
    """`GET /v1/blocks/...`, readable with `DCB_PULL_API_KEYS` or a URL signed with
    `DCB_URL_SIGNING_KEY`, nothing else (the event API's and the site's keys included)."""
    api_keys = _values(settings.pull_api_keys)
    signing_keys = _values(settings.url_signing_keys)
    off = None
    if not settings.pull_enabled:
        off = "the pull endpoint is off (set DCB_PULL_API_KEYS or DCB_URL_SIGNING_KEY)"

    def verify(
        method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], now: float
    ) -> Access:
        return verify_access(
            method, path, query, headers, api_keys=api_keys, signing_keys=signing_keys, now=now
        )

    return PullRoute(
        verify, lookup, int(settings.pull_max_age.total_seconds()), off_reason=off
    )


__all__ = [
    "ACCOUNT", "PUBLIC_APP", "Account", "ConfiguredPortals", "build_endpoints", "build_pull",
    "build_sites",
]  # fmt: skip
