"""Identity tokens: how the shop's server vouches for who a browser's shopper is.

The shop's server (which knows the logged-in customer) signs the shopper's email or
customer id with the shop secret `DCB_IDENTITY_SECRET` and puts the token in its page;
`dcb.js` sends it with every event. The token is::

    base64url(subject) "." base64url(HMAC-SHA256(secret, subject))

without padding, where `subject` is `email:<email, lower case>` or `external_id:<id>`.
`verify_identity` tries every configured secret (several during a rotation) with a
constant-time compare and raises `SignatureError` for a token that does not verify;
`sign_identity` makes tokens (the `dcb identity sign` command and tests use it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Collection

from connector.core.events import ProfileRef
from webhooks.signatures import Failure, SignatureError

#: The identifiers a token may name: the ones a shop's server knows its customers by.
IDENTITY_KINDS = ("email", "external_id")
#: Longest token accepted (an email is at most 254 characters).
MAX_TOKEN = 512


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def subject_for(kind: str, value: str) -> str:
    """What is signed: `email:ada@example.com` (lower case) or `external_id:u-42`."""
    if kind not in IDENTITY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(IDENTITY_KINDS)}, got {kind!r}")
    text = value.strip()
    if not text:
        raise ValueError(f"an empty {kind} cannot be signed")
    return f"{kind}:{text.lower() if kind == 'email' else text}"


def sign_identity(secret: str, kind: str, value: str) -> str:
    """The token for the shopper whose `kind` (`email` or `external_id`) is `value`."""
    subject = subject_for(kind, value).encode()
    mac = hmac.new(secret.encode(), subject, hashlib.sha256).digest()
    return f"{_b64(subject)}.{_b64(mac)}"


def verify_identity(token: str, *, secrets: Collection[str]) -> ProfileRef:
    """The profile a token names; raises `SignatureError` unless one of `secrets` signed
    it (every secret is tried, so timing tells nothing about which came close)."""
    usable = [s for s in secrets if s]
    if not usable:
        raise SignatureError(Failure.NO_SECRET, "identity tokens are off (no DCB_IDENTITY_SECRET)")
    encoded, dot, mac_text = token.strip().rpartition(".")
    if not dot or len(token) > MAX_TOKEN:
        raise SignatureError(Failure.BAD_SIGNATURE, "the identity token is malformed")
    try:
        subject, mac = _unb64(encoded), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise SignatureError(Failure.BAD_SIGNATURE, "the identity token is malformed") from None
    if _b64(subject) != encoded or _b64(mac) != mac_text:  # one token per shopper, exactly
        raise SignatureError(Failure.BAD_SIGNATURE, "the identity token is malformed")
    matched = False
    for secret in usable:
        expected = hmac.new(secret.encode(), subject, hashlib.sha256).digest()
        matched |= hmac.compare_digest(mac, expected)
    if not matched:
        raise SignatureError(Failure.BAD_SIGNATURE, "the identity token does not verify")
    kind, _, value = subject.decode("utf-8", "replace").partition(":")
    if kind not in IDENTITY_KINDS or not value:
        raise SignatureError(Failure.BAD_SIGNATURE, "the identity token names no email or id")
    return ProfileRef(**{kind: value})
