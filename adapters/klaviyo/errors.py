"""Every Klaviyo answer and transport failure, classified once.

`classify(exc, endpoint)` turns what the `klaviyo-api` SDK raised into an outcome
template (`key` empty) that retry code reads:

- RETRY, throttled: 429. Waits `Retry-After` (whole seconds), else `RateLimit-Reset`;
  pauses that endpoint only (Klaviyo limits are per endpoint).
- RETRY: 5xx, 408, 423, 477, urllib3 transport errors (timeouts, refused or dropped
  connections), and 2xx bodies the SDK could not read (the upsert is safe to repeat).
- SKIPPED: 404 and 410 (the profile no longer exists).
- FATAL: any other 4xx, with Klaviyo's error code and detail.

Reasons never carry the API key or personal data (`connector.core.redaction.scrub`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import urllib3
from openapi_client.exceptions import ApiException
from pydantic import ValidationError

from connector.core.ports import WriteOutcome, WriteStatus
from connector.core.redaction import scrub

RETRIABLE = frozenset({408, 423, 477})


def classify(exc: BaseException, endpoint: str) -> WriteOutcome:
    """The outcome class of an exception raised by a call to `endpoint`."""
    if isinstance(exc, ApiException):
        return classify_status(exc.status or 0, exc.headers or {}, exc.body, endpoint)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        kind = "timeout" if _is_timeout(exc) else "connection error"
        return WriteOutcome("", WriteStatus.RETRY, f"{kind} ({type(exc).__name__})")
    if isinstance(exc, ValidationError):
        return WriteOutcome("", WriteStatus.RETRY, "unreadable response from Klaviyo")
    return WriteOutcome("", WriteStatus.RETRY, f"unexpected {type(exc).__name__}")


def classify_status(
    status: int, headers: Mapping[str, str], body: Any, endpoint: str
) -> WriteOutcome:
    message = f"{status} {error_message(body)}".strip()
    if status == 429:
        wait = _seconds(headers, "Retry-After") or _seconds(headers, "RateLimit-Reset")
        return WriteOutcome(
            "", WriteStatus.RETRY, message, retry_after=wait, throttled=True, pause_scope=endpoint
        )
    if status == 0 or status >= 500 or status in RETRIABLE:
        return WriteOutcome("", WriteStatus.RETRY, message)
    if status in (404, 410):
        return WriteOutcome("", WriteStatus.SKIPPED, message)
    return WriteOutcome("", WriteStatus.FATAL, message)


def error_message(body: Any) -> str:
    """`code: detail` of the first JSON:API error in `body`, scrubbed; '' if none."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
        first = data["errors"][0]
        text = f"{first.get('code', '')}: {first.get('detail') or first.get('title', '')}"
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return ""
    return scrub(text)


def _seconds(headers: Mapping[str, str], name: str) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _is_timeout(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)
    return isinstance(exc, urllib3.exceptions.TimeoutError) or isinstance(
        reason, urllib3.exceptions.TimeoutError
    )
