"""Pure checks that an inbound webhook really comes from the platform that claims it.

Every check works on the raw body bytes and the headers as received, takes `now` from the
caller, tries every configured secret (several are valid during a rotation) with a
constant-time compare, and raises one exception type::

    Exception
    └── SignatureError   `.reason` is a `Failure` code for the log, never for the response

Schemes:

- HubSpot v3: `X-HubSpot-Signature-v3` = base64 HMAC-SHA256(client secret,
  method + uri + body + `X-HubSpot-Request-Timestamp`), the timestamp in ms within ±5 min.
  v2 (`X-HubSpot-Signature`, sha256 hex of secret + method + uri + body) and v1 (sha256 hex
  of secret + body) only when v3 is absent and the caller allows legacy signatures.
- Klaviyo system webhooks: `Klaviyo-Signature` = hex HMAC-SHA256(secret, body + the
  `Klaviyo-Timestamp` header text as sent), ±5 min, and the body's
  `meta.klaviyo_webhook_id` equal to the `Klaviyo-Webhook-Id` header.
- Klaviyo flow webhooks (unsigned): a per-account token in `X-DCB-Token`.

Each scheme has a `sign_*` helper producing what the platform would send; tests use them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

TOLERANCE = timedelta(minutes=5)
"""HubSpot documents 5 minutes; Klaviyo documents none, so the same window applies."""

HUBSPOT_V3 = "X-HubSpot-Signature-v3"
HUBSPOT_LEGACY = "X-HubSpot-Signature"
HUBSPOT_VERSION = "X-HubSpot-Signature-Version"
HUBSPOT_TIMESTAMP = "X-HubSpot-Request-Timestamp"
KLAVIYO_SIGNATURE = "Klaviyo-Signature"
KLAVIYO_TIMESTAMP = "Klaviyo-Timestamp"
KLAVIYO_WEBHOOK_ID = "Klaviyo-Webhook-Id"
FLOW_TOKEN = "X-DCB-Token"


class Failure(StrEnum):
    """Why a request was refused."""

    MISSING_HEADER = "missing_header"
    BAD_TIMESTAMP = "bad_timestamp"
    STALE = "stale"
    FUTURE = "future"
    BAD_SIGNATURE = "bad_signature"
    WEBHOOK_ID_MISMATCH = "webhook_id_mismatch"
    UNKNOWN_TOKEN = "unknown_token"
    NO_SECRET = "no_secret"


class SignatureError(Exception):
    """A request failed verification; `reason` says which way. Messages carry no secrets."""

    def __init__(self, reason: Failure, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


# --- shared pieces ------------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name`, matched case-insensitively, or None when absent."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _require(headers: Mapping[str, str], name: str) -> str:
    value = header(headers, name)
    if value is None or not value.strip():
        raise SignatureError(Failure.MISSING_HEADER, f"{name} header is missing")
    return value.strip()


def _raw(text: str) -> bytes:
    """Text as the bytes it travelled as (lossless for anything a header or URL can hold)."""
    return text.encode("utf-8", "surrogatepass")


def _usable(secrets: Collection[str], what: str) -> list[str]:
    """The non-empty secrets (an empty key would let anyone sign); NO_SECRET if none."""
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise SignatureError(Failure.NO_SECRET, f"no {what} is configured")
    return usable


def _matches_any(given: str, expected: list[str]) -> bool:
    """Constant-time compare against every candidate (no early exit reveals which)."""
    given_raw = _raw(given)
    found = False
    for candidate in expected:
        found |= hmac.compare_digest(given_raw, _raw(candidate))
    return found


def _check_window(sent_at: datetime, now: datetime, tolerance: timedelta, name: str) -> None:
    """STALE or FUTURE unless `sent_at` is within `tolerance` of `now` (naive `now` is UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if sent_at < now - tolerance:
        raise SignatureError(Failure.STALE, f"{name} is more than {tolerance} in the past")
    if sent_at > now + tolerance:
        raise SignatureError(Failure.FUTURE, f"{name} is more than {tolerance} in the future")


# --- HubSpot ------------------------------------------------------------------------------

_HUBSPOT_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_HUBSPOT_ESCAPE = re.compile("|".join(_HUBSPOT_DECODED), re.IGNORECASE)


def hubspot_uri(public_base_url: str, path: str, query: str | bytes = "") -> str:
    """The URI HubSpot signed: our public base URL + the raw request path + query.

    `path` is the path as received (still percent-encoded); `query` is the query string
    without `?` (bytes as WSGI hands it over are accepted). The escapes HubSpot decodes
    before signing (`%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B`) are decoded here too.
    """
    if isinstance(query, bytes):
        query = query.decode("utf-8", "surrogateescape")
    uri = public_base_url.rstrip("/") + "/" + path.lstrip("/")
    if query:
        uri += "?" + query
    return _HUBSPOT_ESCAPE.sub(lambda match: _HUBSPOT_DECODED[match.group(0).upper()], uri)


def sign_hubspot_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """`X-HubSpot-Signature-v3` for a request (`uri` as built by `hubspot_uri`)."""
    message = _raw(method.upper()) + _hubspot_uri_bytes(uri) + body + _raw(timestamp)
    digest = hmac.new(_raw(secret), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_hubspot_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """Legacy `X-HubSpot-Signature` (version v2): sha256 hex of secret+method+uri+body."""
    message = _raw(secret) + _raw(method.upper()) + _hubspot_uri_bytes(uri) + body
    return hashlib.sha256(message).hexdigest()


def sign_hubspot_v1(secret: str, body: bytes) -> str:
    """Legacy `X-HubSpot-Signature` (version v1): sha256 hex of secret + body."""
    return hashlib.sha256(_raw(secret) + body).hexdigest()


def _hubspot_uri_bytes(uri: str) -> bytes:
    """The URI's bytes: undecodable query bytes kept by `hubspot_uri` go back as they came."""
    try:
        return uri.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _raw(uri)


def verify_hubspot(
    headers: Mapping[str, str],
    *,
    method: str,
    uri: str,
    body: bytes,
    secrets: Collection[str],
    now: datetime,
    allow_legacy: bool = False,
    tolerance: timedelta = TOLERANCE,
) -> str:
    """Check a HubSpot request; return the signature version that passed ("v3", "v2", "v1").

    `uri` comes from `hubspot_uri` (never the URL a proxy handed us). Legacy v2/v1 are
    checked only when there is no v3 header and `allow_legacy` is set. Raises
    `SignatureError`: MISSING_HEADER, BAD_TIMESTAMP, STALE, FUTURE, BAD_SIGNATURE, NO_SECRET.
    """
    keys = _usable(secrets, "HubSpot client secret")
    if header(headers, HUBSPOT_V3) is None and allow_legacy:
        return _verify_hubspot_legacy(headers, method=method, uri=uri, body=body, secrets=keys)
    signature = _require(headers, HUBSPOT_V3)
    timestamp = _require(headers, HUBSPOT_TIMESTAMP)
    _check_window(_hubspot_time(timestamp), now, tolerance, HUBSPOT_TIMESTAMP)
    expected = [sign_hubspot_v3(key, method, uri, body, timestamp) for key in keys]
    if not _matches_any(signature, expected):
        raise SignatureError(Failure.BAD_SIGNATURE, f"{HUBSPOT_V3} matches no client secret")
    return "v3"


def _hubspot_time(timestamp: str) -> datetime:
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 16:
        raise SignatureError(Failure.BAD_TIMESTAMP, f"{HUBSPOT_TIMESTAMP} is not epoch ms")
    try:
        return datetime.fromtimestamp(int(timestamp) / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise SignatureError(Failure.BAD_TIMESTAMP, f"{HUBSPOT_TIMESTAMP} is out of range") from exc


def _verify_hubspot_legacy(
    headers: Mapping[str, str], *, method: str, uri: str, body: bytes, secrets: list[str]
) -> str:
    signature = _require(headers, HUBSPOT_LEGACY).lower()
    version = (header(headers, HUBSPOT_VERSION) or "v1").strip().lower()
    if version == "v2":
        expected = [sign_hubspot_v2(secret, method, uri, body) for secret in secrets]
    else:
        version = "v1"
        expected = [sign_hubspot_v1(secret, body) for secret in secrets]
    if not _matches_any(signature, expected):
        raise SignatureError(
            Failure.BAD_SIGNATURE, f"{HUBSPOT_LEGACY} ({version}) matches no client secret"
        )
    return version


# --- Klaviyo system webhooks -------------------------------------------------------------


def sign_klaviyo(secret: str, body: bytes, timestamp: str) -> str:
    """`Klaviyo-Signature`: lowercase hex HMAC-SHA256 over body + timestamp header text."""
    return hmac.new(_raw(secret), body + _raw(timestamp), hashlib.sha256).hexdigest()


def verify_klaviyo(
    headers: Mapping[str, str],
    *,
    body: bytes,
    secrets: Collection[str],
    now: datetime,
    tolerance: timedelta = TOLERANCE,
) -> str:
    """Check a Klaviyo system webhook; return its webhook id.

    The timestamp header may be RFC 1123, ISO 8601 or epoch seconds; the signature is
    always over its text as sent. After the signature, the body's
    `meta.klaviyo_webhook_id` must equal the `Klaviyo-Webhook-Id` header. Raises
    `SignatureError`: MISSING_HEADER, BAD_TIMESTAMP, STALE, FUTURE, BAD_SIGNATURE,
    WEBHOOK_ID_MISMATCH, NO_SECRET.
    """
    keys = _usable(secrets, "Klaviyo webhook secret")
    webhook_id = _require(headers, KLAVIYO_WEBHOOK_ID)
    signature = _require(headers, KLAVIYO_SIGNATURE).lower()
    sent = header(headers, KLAVIYO_TIMESTAMP)
    if sent is None or not sent.strip():
        raise SignatureError(Failure.MISSING_HEADER, f"{KLAVIYO_TIMESTAMP} header is missing")
    _check_window(klaviyo_time(sent), now, tolerance, KLAVIYO_TIMESTAMP)
    expected = [sign_klaviyo(key, body, sent) for key in keys]
    if not _matches_any(signature, expected):
        raise SignatureError(Failure.BAD_SIGNATURE, f"{KLAVIYO_SIGNATURE} matches no secret")
    body_id = _body_webhook_id(body)
    if body_id is None or not hmac.compare_digest(_raw(body_id), _raw(webhook_id)):
        raise SignatureError(
            Failure.WEBHOOK_ID_MISMATCH,
            f"meta.klaviyo_webhook_id does not equal the {KLAVIYO_WEBHOOK_ID} header",
        )
    return webhook_id


def klaviyo_time(text: str) -> datetime:
    """When a `Klaviyo-Timestamp` says the request was sent.

    Accepts RFC 1123 (`Thu, 04 Jan 2024 18:05:25 GMT`), ISO 8601 (naive means UTC) and
    epoch seconds (values above 1e11 are taken as milliseconds). Raises `SignatureError`
    (BAD_TIMESTAMP) for anything else.
    """
    value = text.strip()
    moment = _epoch(value) or _iso(value) or _rfc1123(value)
    if moment is None:
        raise SignatureError(Failure.BAD_TIMESTAMP, f"{KLAVIYO_TIMESTAMP} is not a known format")
    return moment


def _epoch(value: str) -> datetime | None:
    if not re.fullmatch(r"\d{1,16}(\.\d{1,9})?", value):
        return None
    seconds = float(value)
    if seconds > 1e11:
        seconds /= 1000
    if not math.isfinite(seconds):
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _iso(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rfc1123(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _body_webhook_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    meta = data.get("meta") if isinstance(data, dict) else None
    webhook_id = meta.get("klaviyo_webhook_id") if isinstance(meta, dict) else None
    return webhook_id if isinstance(webhook_id, str) else None


# --- Klaviyo flow webhooks ---------------------------------------------------------------


def sign_klaviyo_flow(token: str) -> dict[str, str]:
    """The static header a marketer adds to a flow's Webhook action."""
    return {FLOW_TOKEN: token}


def verify_klaviyo_flow(headers: Mapping[str, str], *, tokens: Collection[str]) -> None:
    """Check a flow webhook's `X-DCB-Token` against the account's tokens.

    Raises `SignatureError`: MISSING_HEADER, UNKNOWN_TOKEN, NO_SECRET.
    """
    known = _usable(tokens, "flow token")
    given = _require(headers, FLOW_TOKEN)
    if not _matches_any(given, known):
        raise SignatureError(Failure.UNKNOWN_TOKEN, f"{FLOW_TOKEN} matches no account token")
