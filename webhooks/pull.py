"""`GET /v1/blocks/<platform>/<account>/<profile_id>`: a profile's current decision.

The edge only translates: it checks access (`PullRoute.verify`), asks `PullRoute.lookup`,
and turns the answer into bytes with HTTP caching headers:

- `?format=json` (default): `{"decided", "block", "rule", "variant", "properties", "reason"}`;
  `?format=html`: the block's `dcb_html` fragment; `?format=text`: its `dcb_text` (SMS, push).
- `ETag`: strong, a digest of the body; `If-None-Match` with it answers 304, no body.
- `Cache-Control: private, max-age=N`, or `public, max-age=N` with a `Surrogate-Key`
  naming the profile for a URL signed for a CDN; `no-store` for a fallback a failure caused.
- `X-DCB-Cache`: where the answer came from (`l1`, `l2`, `decided`, `fallback`).
- Refusals are JSON `{"error": reason}`: 400 (bad format, bad id), 401 (no or wrong
  credentials), 403 (expired signed URL), 404 (off, unknown platform or account).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from flask import Flask, Response, jsonify, request

from connector.core.lookup import PullError, PullResult
from webhooks.signed_urls import Access, AccessError

log = logging.getLogger("dcb.web")

PATH = "/v1/blocks/<platform>/<account>/<path:profile_id>"
NAME = "blocks"
#: What each format serves: (content type, the property holding the body or None: JSON).
FORMATS: dict[str, tuple[str, str | None]] = {
    "json": ("application/json", None),
    "html": ("text/html; charset=utf-8", "dcb_html"),
    "text": ("text/plain; charset=utf-8", "dcb_text"),
}

Verify = Callable[[str, str, Mapping[str, str], Mapping[str, str], float], Access]


@dataclass(frozen=True, slots=True)
class PullRoute:
    """The pull endpoint, wired: `verify(method, path, query, headers, now)` returns the
    `Access` or raises `AccessError`; `lookup(platform, account, profile_id)` the decision
    or raises `PullError`; `off_reason` set means the endpoint is off (404)."""

    verify: Verify
    lookup: Callable[[str, str, str], PullResult]
    max_age: int
    off_reason: str | None = None


def add_pull_route(
    app: Flask,
    route: PullRoute,
    *,
    epoch: Callable[[], float] = time.time,
    answered: Callable[[str, int, float], None] = lambda _name, _status, _seconds: None,
) -> None:
    """Register the pull endpoint on `app`; `answered` is called once per request."""

    def view(platform: str, account: str, profile_id: str) -> Response:
        started = time.perf_counter()
        response = _answer(route, platform, account, profile_id, epoch())
        answered(NAME, response.status_code, time.perf_counter() - started)
        return response

    app.add_url_rule(PATH, endpoint=NAME, view_func=view, methods=["GET"])


def _answer(route: PullRoute, platform: str, account: str, profile_id: str, now: float) -> Response:
    if route.off_reason:
        return _refuse(404, route.off_reason)
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        return _refuse(400, f"unknown format {fmt!r} (json, html or text)")
    query = {k: v for k, v in request.args.items()}
    headers = dict(request.headers.items())
    try:
        method = "GET" if request.method == "HEAD" else request.method  # a HEAD is a GET
        access = route.verify(method, request.path, query, headers, now)
    except AccessError as exc:
        return _refuse(exc.status, exc.message)
    try:
        result = route.lookup(platform, account, profile_id)
    except PullError as exc:
        return _refuse(exc.status, exc.message)
    content_type, prop = FORMATS[fmt]
    if prop is None:
        body = json.dumps(result.decision.to_json(), ensure_ascii=False, sort_keys=True).encode()
    else:
        body = result.decision.properties.get(prop, "").encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    headers_out = {"ETag": f'"{etag}"', "X-DCB-Cache": result.source}
    if not result.cacheable:
        headers_out["Cache-Control"] = "no-store"
    elif access.cdn:
        headers_out["Cache-Control"] = f"public, max-age={route.max_age}"
        headers_out["Surrogate-Key"] = _surrogate_keys(account, result.profile_key)
    else:
        headers_out["Cache-Control"] = f"private, max-age={route.max_age}"
    if request.if_none_match and request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers_out)
    return Response(body, status=200, content_type=content_type, headers=headers_out)


def _surrogate_keys(account: str, profile_key: str | None) -> str:
    """Space-separated CDN purge keys: the connector's, the account's and the profile's
    (`dcb/<account>/<profile key>`, percent-encoded; unknown profiles share one)."""
    profile = quote(profile_key, safe="@:._-") if profile_key else "-unknown"
    return f"dcb dcb/{quote(account, safe='')} dcb/{quote(account, safe='')}/{profile}"


def _refuse(status: int, reason: str) -> Response:
    log.info("blocks refused %d: %s", status, reason)
    response = jsonify(error=reason)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
