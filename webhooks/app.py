"""The Flask app: raw bytes -> verify -> parse -> route -> enqueue -> 2xx. No business logic.

Verification names the account the request is for; routing hands each account its events
(403 when none is for an account the request may touch). `create_app` takes every
endpoint already wired (its verification, parser and routing, built by
the composition root), the `Intake` that queues what they parse, and readiness and metrics
callables. Every refused request is one log line with its reason, never a traceback; the
response body says only what the sender may know (never which check failed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from connector.core.inbound import ParseError, ParseResult
from connector.core.intake import Intake, Receipt, Routed
from connector.core.storage import Backpressure
from webhooks.signatures import SignatureError

log = logging.getLogger("dcb.web")

#: Body limits: 1 MiB for most senders; Klaviyo system webhooks batch events up to 8 MiB.
DEFAULT_MAX_BODY = 1024 * 1024
#: What a sender is told to wait when the queue is full.
BACKPRESSURE_RETRY_SECONDS = 5


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What verification sees: the request exactly as received."""

    method: str
    path: str
    query_string: bytes
    headers: Mapping[str, str]
    body: bytes


Verify = Callable[[RawRequest, datetime], str]
Parse = Callable[[RawRequest, datetime], ParseResult]
#: Splits what an account's request carried into each account's share (pinning it to the
#: platform account it verified for); raises `Refused` when none of it is for an account.
Route = Callable[[str, ParseResult], Sequence[Routed]]


class Refused(Exception):
    """A verified request that belongs to no account it may touch (403)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One inbound route. `verify` returns the account the request belongs to or raises
    `SignatureError`; `route` (default: everything to that account, for `platforms`) says
    which account gets which events; `off_reason` set means the platform is not configured
    (404)."""

    path: str
    name: str
    verify: Verify
    parse: Parse
    platforms: tuple[str, ...]
    max_body: int = DEFAULT_MAX_BODY
    require_event: bool = False
    retry_after_ms: bool = False  # HubSpot workflows read Retry-After in milliseconds
    off_reason: str | None = None
    route: Route | None = None

    def routed(self, account: str, result: ParseResult) -> Sequence[Routed]:
        if self.route is None:
            return [Routed(account, self.platforms, result)]
        return self.route(account, result)


@dataclass(frozen=True, slots=True)
class Observer:
    """Hooks for metrics: called once per answered inbound request."""

    answered: Callable[[str, int, float], None] = lambda _endpoint, _status, _seconds: None


def create_app(
    endpoints: Sequence[Endpoint],
    intake: Intake,
    *,
    ready: Callable[[], tuple[bool, Mapping[str, Any]]],
    metrics: Callable[[], tuple[bytes, str]],
    clock: Callable[[], datetime],
    observer: Observer | None = None,
    extra: Callable[[Flask], None] | None = None,
) -> Flask:
    """The WSGI app; `extra` may add routes (e.g. the pull endpoint) before it is returned."""
    app = Flask("dcb")
    app.config["MAX_CONTENT_LENGTH"] = max([DEFAULT_MAX_BODY, *(e.max_body for e in endpoints)])
    watch = observer or Observer()
    for endpoint in endpoints:
        app.add_url_rule(
            endpoint.path,
            endpoint=endpoint.name,
            view_func=_inbound_view(endpoint, intake, clock, watch),
            methods=["POST"],
        )

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        ok, details = ready()
        return jsonify(status="ok" if ok else "unavailable", **details), 200 if ok else 503

    @app.get("/metrics")
    def metrics_view() -> Response:
        payload, content_type = metrics()
        return Response(payload, content_type=content_type)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return jsonify(error=exc.description or exc.name), status

    if extra is not None:
        extra(app)
    return app


def _inbound_view(
    endpoint: Endpoint, intake: Intake, clock: Callable[[], datetime], watch: Observer
) -> Callable[[], tuple[Response, int]]:
    def view() -> tuple[Response, int]:
        started = time.perf_counter()
        response, status = _handle(endpoint, intake, clock)
        watch.answered(endpoint.name, status, time.perf_counter() - started)
        return response, status

    view.__name__ = f"inbound_{endpoint.name}"
    return view


def _handle(
    endpoint: Endpoint, intake: Intake, clock: Callable[[], datetime]
) -> tuple[Response, int]:
    if endpoint.off_reason:
        return _refuse(endpoint, 404, endpoint.off_reason, endpoint.off_reason)
    request.max_content_length = endpoint.max_body
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _refuse(endpoint, 413, "body over the limit", f"body over {endpoint.max_body} bytes")
    headers = dict(request.headers.items())  # checks match names case-insensitively
    path, query = _as_sent(request.environ, request.path, request.query_string)
    raw = RawRequest(request.method, path, query, headers, body)
    now = clock()
    try:
        account = endpoint.verify(raw, now)
    except SignatureError as exc:
        return _refuse(endpoint, 401, str(exc), "unauthorized")
    try:
        result = endpoint.parse(raw, now)
    except ParseError as exc:
        return _refuse(endpoint, 400, str(exc), str(exc))
    try:
        parts = endpoint.routed(account, result)
    except Refused as exc:
        return _refuse(endpoint, 403, str(exc), "forbidden")
    try:
        receipt = intake.accept_routed(parts, require_event=endpoint.require_event)
    except Backpressure as exc:
        response, status = _refuse(endpoint, 429, str(exc), "queue full, retry later")
        wait = BACKPRESSURE_RETRY_SECONDS
        response.headers["Retry-After"] = str(wait * 1000 if endpoint.retry_after_ms else wait)
        return response, status
    return _answer(endpoint, receipt)


def _as_sent(environ: Mapping[str, Any], path: str, query: bytes) -> tuple[str, bytes]:
    """The path and query exactly as the sender wrote them (signatures cover those bytes),
    from the server's raw request line when it gives one; else the decoded path."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not isinstance(raw, str) or not raw.startswith("/"):
        return path, query
    raw_path, _, raw_query = raw.partition("?")
    return raw_path, raw_query.encode("latin-1")


def _answer(endpoint: Endpoint, receipt: Receipt) -> tuple[Response, int]:
    if receipt.status >= 400:
        log.info("%s refused %d: %s", endpoint.name, receipt.status, receipt.body.get("error"))
    return jsonify(dict(receipt.body)), receipt.status


def _refuse(endpoint: Endpoint, status: int, reason: str, public: str) -> tuple[Response, int]:
    log.info("%s refused %d: %s", endpoint.name, status, reason)
    return jsonify(error=public), status
