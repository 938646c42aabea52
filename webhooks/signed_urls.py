"""Who may read the pull endpoint: an API key of its own, or a signed, expiring URL.

A signed URL carries `?expires=<epoch seconds>&sig=<hex>` (and `&cdn=1` for one meant
for a CDN), where `sig` is HMAC-SHA256 with a URL signing key over::

    GET\\n<path, percent-decoded>\\n<expires>\\n<"cdn" or "private">

Several signing keys may be configured (rotation): a URL signed with any verifies, and
`sign_path` signs with the first. Every comparison is constant-time and tries every key.
The signature is checked before the expiry, so "expired" (403) is only ever said of a URL
the connector really signed. Failures raise one type::

    Exception
    └── AccessError   `.status` (400, 401 or 403) and `.message`, which carry no secret
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from webhooks.bearer import verify_bearer
from webhooks.signatures import SignatureError, header

EXPIRES = "expires"
SIGNATURE = "sig"
CDN = "cdn"


class AccessError(Exception):
    """A pull request that may not read; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Access:
    """How a request was let in: by API key, or by a signed URL (`cdn` for a CDN's)."""

    signed: bool
    cdn: bool = False


def url_signature(key: str, path: str, expires: int, cdn: bool, method: str = "GET") -> str:
    """The hex HMAC-SHA256 of a signed URL (see the module docstring)."""
    scope = "cdn" if cdn else "private"
    message = f"{method.upper()}\n{path}\n{expires}\n{scope}"
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def sign_path(path: str, *, key: str, expires: int, cdn: bool = False) -> str:
    """`path` (percent-decoded, e.g. `/v1/blocks/klaviyo/default/ada@example.com`) as a
    signed, percent-encoded path with its query, valid until `expires` (epoch seconds)."""
    query = {EXPIRES: str(expires), SIGNATURE: url_signature(key, path, expires, cdn)}
    if cdn:
        query[CDN] = "1"
    return f"{quote(path, safe='/@:')}?{urlencode(query)}"


def verify_access(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    api_keys: Collection[str],
    signing_keys: Collection[str],
    now: float,
) -> Access:
    """Let in a request with `Authorization: Bearer <one of api_keys>`, or a URL signed
    with one of `signing_keys` that has not expired at `now`; raises `AccessError` (401
    no or wrong credentials, 403 an expired signed URL, 400 a malformed `expires`)."""
    if header(headers, "Authorization") is not None:
        if not api_keys:
            raise AccessError(401, "API keys are not enabled for this endpoint (DCB_PULL_API_KEYS)")
        try:
            verify_bearer(headers, keys=api_keys)
        except SignatureError:
            raise AccessError(401, "the bearer token is not a pull API key") from None
        return Access(signed=False)
    if SIGNATURE in query or EXPIRES in query:
        return _verify_signed(method, path, query, signing_keys, now)
    raise AccessError(
        401, "send Authorization: Bearer <pull API key>, or use a signed URL (dcb blocks url)"
    )


def _verify_signed(
    method: str, path: str, query: Mapping[str, str], keys: Collection[str], now: float
) -> Access:
    usable = [k for k in keys if k]
    if not usable:
        raise AccessError(401, "signed URLs are not enabled (DCB_URL_SIGNING_KEY)")
    raw_expires, signature = query.get(EXPIRES, ""), query.get(SIGNATURE, "")
    if not signature:
        raise AccessError(401, "the signed URL has no sig")
    try:
        expires = int(raw_expires)
    except ValueError:
        raise AccessError(400, "expires must be a whole number of seconds since 1970") from None
    cdn = query.get(CDN, "") == "1"
    matched = False
    for key in usable:
        expected = url_signature(key, path, expires, cdn, method)
        matched |= hmac.compare_digest(expected.encode(), signature.encode())
    if not matched:
        raise AccessError(401, "the URL's signature does not match")
    if now >= expires:
        when = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
        raise AccessError(403, f"the signed URL expired at {when}")
    return Access(signed=True, cdn=cdn)
