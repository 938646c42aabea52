"""Every HubSpot answer and transport failure, classified once.

`classify(exc, now=..., tz=...)` turns what `hubspot-api-client` raised into an outcome
template (`key` empty); `classify_record_error(category, message)` does the same for one
record's error inside a 207 batch answer.

- RETRY, throttled, pausing the whole account (HubSpot's limits cover the account):
  429 (waits `Retry-After`, else one second); a `DAILY` 429 waits until the next midnight
  in the account's time zone and says so; 423 (locked) waits at least two seconds.
- RETRY: 5xx, 477, status 0, urllib3 transport errors (timeouts, dropped connections).
- SKIPPED: 404, and a record whose error category is OBJECT_NOT_FOUND.
- FATAL: any other 4xx (a property that does not exist, an invalid value ...).

Reasons never carry the token or personal data (`connector.core.redaction.scrub`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

import hubspot.crm.contacts as contacts
import hubspot.crm.properties as properties
import urllib3

from connector.core.ports import ACCOUNT_SCOPE, WriteOutcome, WriteStatus
from connector.core.redaction import scrub

API_EXCEPTIONS = (contacts.ApiException, properties.ApiException)
SKIP_CATEGORIES = frozenset({"OBJECT_NOT_FOUND"})
FATAL_CATEGORIES = frozenset(
    {
        "VALIDATION_ERROR",
        "PROPERTY_DOESNT_EXIST",
        "INVALID_EMAIL",
        "INVALID_AUTHENTICATION",
        "MISSING_SCOPES",
    }
)
LOCKED_WAIT = 2.0  # HubSpot: wait at least two seconds after a 423


def classify(exc: BaseException, *, now: float, tz: tzinfo) -> WriteOutcome:
    """The outcome class of an exception raised by an SDK call made at `now` (epoch s)."""
    if isinstance(exc, API_EXCEPTIONS):
        return classify_status(exc.status or 0, exc.headers or {}, exc.body, now=now, tz=tz)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        timeout = isinstance(exc, urllib3.exceptions.TimeoutError) or isinstance(
            getattr(exc, "reason", None), urllib3.exceptions.TimeoutError
        )
        kind = "timeout" if timeout else "connection error"
        return WriteOutcome("", WriteStatus.RETRY, f"{kind} ({type(exc).__name__})")
    return WriteOutcome("", WriteStatus.RETRY, f"unexpected {type(exc).__name__}")


def classify_status(
    status: int, headers: Mapping[str, str], body: Any, *, now: float, tz: tzinfo
) -> WriteOutcome:
    data = error_body(body)
    message = f"{status} {_message(data)}".strip()
    if status == 429 and data.get("policyName") == "DAILY":
        reset = _next_midnight(now, tz)
        reason = f"429 DAILY limit reached: account paused until {reset.isoformat()}"
        return WriteOutcome(
            "",
            WriteStatus.RETRY,
            reason,
            retry_after=reset.timestamp() - now,
            throttled=True,
            pause_scope=ACCOUNT_SCOPE,
        )
    if status in (429, 423):
        wait = _retry_after(headers)
        wait = max(LOCKED_WAIT, wait or 0.0) if status == 423 else (wait or 1.0)
        return WriteOutcome(
            "",
            WriteStatus.RETRY,
            message,
            retry_after=wait,
            throttled=True,
            pause_scope=ACCOUNT_SCOPE,
        )
    if status == 0 or status >= 500 or status == 477:
        return WriteOutcome("", WriteStatus.RETRY, message)
    if status == 404:
        return WriteOutcome("", WriteStatus.SKIPPED, message)
    return WriteOutcome("", WriteStatus.FATAL, message)


def classify_record_error(category: str, message: str) -> WriteOutcome:
    """One record's error inside a 207 answer."""
    reason = scrub(f"{category}: {message}")
    if category in SKIP_CATEGORIES:
        return WriteOutcome("", WriteStatus.SKIPPED, reason)
    if category in FATAL_CATEGORIES or category.startswith("INVALID"):
        return WriteOutcome("", WriteStatus.FATAL, reason)
    return WriteOutcome("", WriteStatus.RETRY, reason)


def error_body(body: Any) -> dict[str, Any]:
    """A HubSpot error answer's JSON object (empty when it is not one)."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message(data: Mapping[str, Any]) -> str:
    parts = [str(data.get("category") or ""), str(data.get("message") or "")]
    codes = [str(e.get("code")) for e in data.get("errors") or [] if isinstance(e, dict)]
    text = ": ".join(p for p in parts if p) + (f" ({', '.join(codes)})" if codes else "")
    return scrub(text)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _next_midnight(now: float, tz: tzinfo) -> datetime:
    local = datetime.fromtimestamp(now, tz)
    return (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
