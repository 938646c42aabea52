"""The site snippet: `GET /v1/dcb.js`, and the browser path of `POST /v1/events`.

A shop's pages load `dcb.js` with the shop's publishable key; the script posts shoppers'
product views, cart changes and checkout steps to `/v1/events` with the key in `X-DCB-Key`.
`install_site` registers the script's route and takes over the browser's requests to
`/v1/events` (CORS preflights, and POSTs carrying `X-DCB-Key`) before the server route,
which keeps answering the shop's server (`Authorization: Bearer`). A browser POST is:

1. from an allowed origin (`Origin` exactly one of some account's allowed origins), else
   403 with no CORS headers (so a foreign page cannot even read the answer);
2. carrying a publishable key, else 401, whose account's pages are on that origin, else
   403 (the key decides the account: each account of `dcb.toml` may have its own);
3. within the rate limits per key, per client address and per browser id, else 429 with
   `Retry-After`;
4. a valid browser event (`connector.core.browser`), else 400 with the reason;
5. with a verifying identity token when it has one, else 401 with the reason;

and is then queued like any event. The publishable key grants nothing else: no other
route reads `X-DCB-Key`, and the server route only takes the server's bearer keys.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from connector.core.browser import MAX_BODY, browser_event, read_browser_event
from connector.core.events import ProfileRef
from connector.core.inbound import ParseError, ParseResult
from connector.core.intake import Intake
from connector.core.ratelimit import RateLimiter
from connector.core.storage import Backpressure
from webhooks.app import BACKPRESSURE_RETRY_SECONDS, Observer
from webhooks.identity import verify_identity
from webhooks.signatures import SignatureError

log = logging.getLogger("dcb.web")

EVENTS_PATH = "/v1/events"
SCRIPT_PATH = "/v1/dcb.js"
KEY_HEADER = "X-DCB-Key"
#: How long browsers and CDNs may use the script before asking again (with its ETag).
SCRIPT_MAX_AGE = 300
#: How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE = 600
#: The name browser requests are counted under in metrics.
ENDPOINT_NAME = "events_browser"


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-minute limiters (`RateLimiter.reserve` keys are the key, the address, the id)."""

    per_key: RateLimiter
    per_address: RateLimiter
    per_browser: RateLimiter


@dataclass(frozen=True, slots=True)
class Site:
    """One account's site: its publishable keys decide that an event is the account's."""

    account: str
    platforms: tuple[str, ...]
    publishable_keys: tuple[str, ...]
    allowed_origins: frozenset[str]
    shop_domains: tuple[str, ...]
    identity_secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sites:
    """Every account's site, built by the composition root; `off_reason` when none is on."""

    members: tuple[Site, ...]
    limits: RateLimits
    behind_proxy: bool = False
    off_reason: str | None = None

    def allow(self, origin: str) -> bool:
        """Whether some account's pages are on `origin`."""
        return any(origin in site.allowed_origins for site in self.members)

    def for_key(self, key: str) -> Site | None:
        """The site whose publishable key this is (every key is compared: timing tells
        nothing about which exist)."""
        found = None
        for site in self.members:
            if _known_key(key, site.publishable_keys):
                found = site
        return found


class _Refused(Exception):
    def __init__(self, status: int, public: str, reason: str = "", retry_after: float = 0) -> None:
        super().__init__(reason or public)
        self.status, self.public, self.retry_after = status, public, retry_after


def install_site(
    app: Flask,
    site: Sites,
    intake: Intake,
    *,
    clock: Callable[[], datetime],
    observer: Observer | None = None,
) -> None:
    """Add `GET /v1/dcb.js` and the browser path of `POST /v1/events` to `app`."""
    watch = observer or Observer()

    @app.get(SCRIPT_PATH)
    def script() -> Response:
        if site.off_reason:
            return _json(404, {"error": site.off_reason})
        body, etag = _script()
        response = Response(body, content_type="application/javascript; charset=utf-8")
        response.headers["Cache-Control"] = f"public, max-age={SCRIPT_MAX_AGE}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.set_etag(etag)
        response.make_conditional(request)
        return response

    @app.before_request
    def browser_events() -> Response | None:
        if request.path != EVENTS_PATH:
            return None
        if request.method == "OPTIONS":
            return _preflight(site)
        if request.method != "POST" or KEY_HEADER.lower() not in _header_names():
            return None  # the shop's server: the bearer-key route answers it
        started = time.perf_counter()
        response = _post(site, intake, clock)
        watch.answered(ENDPOINT_NAME, response.status_code, time.perf_counter() - started)
        return response


def _header_names() -> set[str]:
    return {name.lower() for name in request.headers.keys()}  # noqa: SIM118


@cache
def _script() -> tuple[bytes, str]:
    body = (resources.files("webhooks") / "site" / "dcb.js").read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:20]


def _preflight(site: Sites) -> Response:
    origin = request.headers.get("Origin", "")
    if site.off_reason:
        return _json(404, {"error": site.off_reason})
    if not site.allow(origin):
        log.info("%s refused 403: preflight from origin %r", ENDPOINT_NAME, origin[:100])
        return _json(403, {"error": "origin not allowed"})
    response = Response(status=204)
    _cors(response, origin)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = f"Content-Type, {KEY_HEADER}"
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


def _post(sites: Sites, intake: Intake, clock: Callable[[], datetime]) -> Response:
    origin = request.headers.get("Origin", "")
    if sites.off_reason:
        return _json(404, {"error": sites.off_reason})
    if not sites.allow(origin):
        log.info("%s refused 403: origin %r", ENDPOINT_NAME, origin[:100])
        return _json(403, {"error": "origin not allowed"})
    try:
        response = _json(*_accept(sites, origin, intake, clock()))
    except _Refused as refused:
        log.info("%s refused %d: %s", ENDPOINT_NAME, refused.status, refused)
        response = _json(refused.status, {"error": refused.public})
        if refused.retry_after:
            response.headers["Retry-After"] = str(max(1, math.ceil(refused.retry_after)))
    _cors(response, origin)
    return response


def _accept(
    sites: Sites, origin: str, intake: Intake, now: datetime
) -> tuple[int, dict[str, object]]:
    key = request.headers.get(KEY_HEADER, "").strip()
    site = sites.for_key(key)
    if site is None:
        raise _Refused(401, "unknown publishable key")
    if origin not in site.allowed_origins:
        raise _Refused(403, "origin not allowed for this key")
    limits, account = sites.limits, site.account
    _limit(limits.per_key, f"key:{key}", "this key's")
    _limit(limits.per_address, f"ip:{account}:{_address(sites.behind_proxy)}", "this address's")
    request.max_content_length = MAX_BODY
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise _Refused(413, f"body over {MAX_BODY} bytes") from None
    try:
        event = read_browser_event(body, shop_domains=site.shop_domains)
    except ParseError as exc:
        raise _Refused(400, str(exc)) from None
    _limit(limits.per_browser, f"browser:{account}:{event.browser_id}", "this browser's")
    identity: ProfileRef | None = None
    if event.identity is not None:
        try:
            identity = verify_identity(event.identity, secrets=site.identity_secrets)
        except SignatureError as exc:
            raise _Refused(401, exc.message) from None
    result = ParseResult(events=(browser_event(event, identity=identity, received_at=now),))
    try:
        receipt = intake.accept(site.account, site.platforms, result, require_event=True)
    except Backpressure as exc:
        wait = BACKPRESSURE_RETRY_SECONDS
        raise _Refused(429, "queue full, retry later", str(exc), wait) from None
    body_out = dict(receipt.body)
    body_out["identified"] = identity is not None
    return receipt.status, body_out


def _known_key(key: str, keys: Sequence[str]) -> bool:
    matched = False
    for candidate in keys:  # every key is compared: timing tells nothing
        matched |= hmac.compare_digest(key.encode(), candidate.encode())
    return matched and bool(key)


def _limit(limiter: RateLimiter, key: str, whose: str) -> None:
    wait = limiter.reserve(key)
    if wait > 0:
        raise _Refused(429, f"{whose} rate limit reached, retry later", retry_after=wait)


def _address(behind_proxy: bool) -> str:
    """The client's address: the one the (single) reverse proxy appended last to
    X-Forwarded-For when behind one (a client can forge the others), else the peer's."""
    if behind_proxy:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        if hops and hops[-1]:
            return hops[-1]
    return request.remote_addr or "unknown"


def _cors(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"


def _json(status: int, body: dict[str, object]) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response
