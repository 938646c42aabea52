"""The first-party event API's check: `Authorization: Bearer <key>` against the account's keys."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping

from webhooks.signatures import Failure, SignatureError, header


def verify_bearer(headers: Mapping[str, str], *, keys: Collection[str]) -> None:
    """Raise `SignatureError` unless the bearer token equals one of `keys` (constant time;
    every key is compared, so timing tells nothing about which came close)."""
    usable = [k for k in keys if k]
    if not usable:
        raise SignatureError(Failure.NO_SECRET, "no API key is configured")
    scheme, _, token = (header(headers, "Authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SignatureError(Failure.MISSING_HEADER, "Authorization: Bearer <key> is missing")
    matched = False
    for key in usable:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    if not matched:
        raise SignatureError(Failure.UNKNOWN_TOKEN, "the bearer token matches no API key")
