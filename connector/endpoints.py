"""The inbound routes, each wired with its verification and parser from one `Settings`.

A platform without credentials is off: its routes answer 404 with the reason. An account
pinned to one HubSpot portal or Klaviyo account drops events from any other (with a 2xx,
so the platform does not retry them for a day).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from urllib.parse import parse_qs

from adapters.hubspot.inbound import parse_app_webhook
from adapters.hubspot.inbound_mapping import PropertyEvent
from adapters.hubspot.inbound_workflow import parse_workflow_webhook
from adapters.klaviyo.inbound import parse_flow_webhook, parse_system_webhook
from connector.core.events import EventType
from connector.core.inbound import Dropped, ParseError, ParseResult
from connector.core.intake import parse_first_party
from connector.core.lookup import PullResult
from connector.settings import Secret, Settings
from webhooks.app import Endpoint, Parse, RawRequest
from webhooks.bearer import verify_bearer
from webhooks.pull import PullRoute
from webhooks.signatures import (
    hubspot_uri,
    verify_hubspot,
    verify_klaviyo,
    verify_klaviyo_flow,
)
from webhooks.signed_urls import Access, verify_access
from webhooks.site import RateLimits, Site

ACCOUNT = "default"
KLAVIYO_SYSTEM_MAX_BODY = 8 * 1024 * 1024


def build_endpoints(settings: Settings) -> list[Endpoint]:
    """Every inbound route for the settings' one account."""
    return [*_hubspot(settings), *_klaviyo(settings), _first_party(settings)]


def _secrets(values: tuple[Secret, ...]) -> list[str]:
    return [secret.value for secret in values]


def _pinned(expected: str | None, parse: Parse) -> Parse:
    """Drop events and erasures whose platform account is not `expected`."""
    if expected is None:
        return parse

    def pinned(raw: RawRequest, now: datetime) -> ParseResult:
        result = parse(raw, now)
        events = [e for e in result.events if e.context.get("account_id") in (None, expected)]
        erasures = [r for r in result.erasures if r.account_id in (None, expected)]
        foreign = len(result.events) - len(events) + len(result.erasures) - len(erasures)
        dropped = [*result.dropped, *[Dropped(0, f"not this account's ({expected})")] * foreign]
        return replace(
            result, events=tuple(events), erasures=tuple(erasures), dropped=tuple(dropped)
        )

    return pinned


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


def _hubspot(settings: Settings) -> list[Endpoint]:
    off = None
    if not settings.hubspot_enabled:
        off = "HubSpot is not configured (set DCB_HUBSPOT_ACCESS_TOKEN)"
    elif not settings.hubspot_client_secrets:
        off = "HubSpot webhooks need DCB_HUBSPOT_CLIENT_SECRET"
    secrets = _secrets(settings.hubspot_client_secrets)
    base = settings.public_url or ""
    mapping = {
        prop: PropertyEvent(EventType(kind), prop)
        for prop, kind in settings.hubspot_property_events.items()
    }

    def verify(raw: RawRequest, now: datetime) -> str:
        uri = hubspot_uri(base, raw.path, raw.query_string)
        verify_hubspot(
            raw.headers,
            method=raw.method,
            uri=uri,
            body=raw.body,
            secrets=secrets,
            now=now,
            allow_legacy=settings.hubspot_allow_legacy_signatures,
        )
        return ACCOUNT

    def app(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_app_webhook(raw.body, received_at=now, property_events=mapping)

    def workflow(raw: RawRequest, now: datetime) -> ParseResult:
        kind = _event_type(raw.query_string)
        return parse_workflow_webhook(
            raw.body, received_at=now, event_type=kind, property_events=mapping
        )

    portal = settings.hubspot_portal_id
    return [
        Endpoint(
            "/webhooks/hubspot",
            "hubspot",
            verify,
            _pinned(portal, app),
            ("hubspot",),
            off_reason=off,
        ),
        Endpoint(
            "/webhooks/hubspot/workflow",
            "hubspot_workflow",
            verify,
            _pinned(portal, workflow),
            ("hubspot",),
            retry_after_ms=True,
            off_reason=off,
        ),
    ]


def _klaviyo(settings: Settings) -> list[Endpoint]:
    enabled = settings.klaviyo_enabled
    system_off = flow_off = None
    if not enabled:
        system_off = flow_off = "Klaviyo is not configured (set DCB_KLAVIYO_API_KEY)"
    if enabled and not settings.klaviyo_webhook_secrets:
        system_off = "Klaviyo system webhooks need DCB_KLAVIYO_WEBHOOK_SECRET"
    if enabled and not settings.klaviyo_flow_tokens:
        flow_off = "Klaviyo flow webhooks need DCB_KLAVIYO_FLOW_TOKEN"
    secrets = _secrets(settings.klaviyo_webhook_secrets)
    tokens = _secrets(settings.klaviyo_flow_tokens)

    def verify_system(raw: RawRequest, now: datetime) -> str:
        verify_klaviyo(raw.headers, body=raw.body, secrets=secrets, now=now)
        return ACCOUNT

    def verify_flow(raw: RawRequest, now: datetime) -> str:
        verify_klaviyo_flow(raw.headers, tokens=tokens)
        return ACCOUNT

    def system(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_system_webhook(raw.body, received_at=now)

    def flow(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_flow_webhook(raw.body, received_at=now)

    return [
        Endpoint(
            "/webhooks/klaviyo",
            "klaviyo",
            verify_system,
            _pinned(settings.klaviyo_account_id, system),
            ("klaviyo",),
            max_body=KLAVIYO_SYSTEM_MAX_BODY,
            off_reason=system_off,
        ),
        Endpoint(
            "/webhooks/klaviyo/flow",
            "klaviyo_flow",
            verify_flow,
            flow,
            ("klaviyo",),
            off_reason=flow_off,
        ),
    ]


def _first_party(settings: Settings) -> Endpoint:
    keys = _secrets(settings.events_api_keys)
    off = None if keys else "the event API is off (set DCB_EVENTS_API_KEY)"

    def verify(raw: RawRequest, now: datetime) -> str:
        verify_bearer(raw.headers, keys=keys)
        return ACCOUNT

    def parse(raw: RawRequest, now: datetime) -> ParseResult:
        return parse_first_party(raw.body, received_at=now)

    return Endpoint(
        "/v1/events",
        "events",
        verify,
        parse,
        settings.platforms,
        require_event=True,
        off_reason=off,
    )


def build_site(settings: Settings, limits: RateLimits) -> Site:
    """The site snippet's browser path for the settings' one account. Browser events are
    queued for every platform; the processor writes them only where the profile is known."""
    off = None
    if not settings.site_enabled:
        off = "the site snippet is off (set DCB_PUBLISHABLE_KEY and DCB_ALLOWED_ORIGINS)"
    return Site(
        account=ACCOUNT,
        platforms=settings.platforms,
        publishable_keys=settings.publishable_keys,
        allowed_origins=frozenset(settings.allowed_origins),
        shop_domains=settings.url_domains,
        identity_secrets=tuple(_secrets(settings.identity_secrets)),
        limits=limits,
        behind_proxy=settings.behind_proxy,
        off_reason=off,
    )


def build_pull(settings: Settings, lookup: Callable[[str, str, str], PullResult]) -> PullRoute:
    """`GET /v1/blocks/...`, readable with `DCB_PULL_API_KEYS` or a URL signed with
    `DCB_URL_SIGNING_KEY`, nothing else (the event API's and the site's keys included)."""
    api_keys = _secrets(settings.pull_api_keys)
    signing_keys = _secrets(settings.url_signing_keys)
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
