"""OAuth grants as plain data, and the port of the store that keeps them (encrypted).

An account installed through a public app's OAuth flow holds one `OAuthGrant`: an access
token that lasts minutes and the refresh token that renews it. Grants are named by the
platform and its account id (`hubspot-<portalId>`, `klaviyo-<accountId>`). A grant whose
refresh was refused because the app was uninstalled stays stored, `disconnected`, until
the account is removed: its writes wait instead of failing.

`GrantStore` is what the token logic needs from storage; `adapters/storage/token_store.py`
implements it on SQLite and on Redis, encrypting the tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

T = TypeVar("T")

CONNECTED = "connected"
DISCONNECTED = "disconnected"


def account_name(platform: str, account_id: str | int) -> str:
    """The name of a platform account's grant, installed through a public app."""
    return f"{platform}-{account_id}"


def hubspot_account(portal_id: str | int) -> str:
    """The grant name of a HubSpot portal installed through the public app."""
    return account_name("hubspot", portal_id)


def klaviyo_account(account_id: str) -> str:
    """The grant name of a Klaviyo account installed through the OAuth app."""
    return account_name("klaviyo", account_id)


class TokenProvider(Protocol):
    """An account's current access token, asked before every call; with `force_refresh` a
    new one (after a 401 for `stale`, the token that was refused). Raises
    `TokenUnavailable` when there is none to use."""

    def __call__(self, force_refresh: bool = False, stale: str | None = None) -> str: ...


def with_fresh_token(
    provider: TokenProvider,
    wait_turn: Callable[[], None],
    call: Callable[[str], T],
    refused: Callable[[Exception], bool],
) -> T:
    """`call(token)` after `wait_turn()` (the rate gate), with the provider's current
    token; once more with a refreshed one when the platform refused it (`refused(exc)`: a
    401). Raises what the call raises, or `TokenUnavailable`."""
    token = provider()
    wait_turn()
    try:
        return call(token)
    except Exception as exc:
        if not refused(exc):
            raise
    token = provider(force_refresh=True, stale=token)
    wait_turn()
    return call(token)


class TokenUnavailable(Exception):
    """No usable access token for an account right now; the message says why (never a
    token). `retry_after` is how long to wait before asking again."""

    def __init__(self, reason: str, retry_after: float = 60.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class OAuthGrant:
    """One account's tokens; the tokens never show in a repr."""

    account: str
    platform: str
    account_id: str  # the platform's id: HubSpot's portal id, Klaviyo's account id
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float  # epoch seconds
    status: str = CONNECTED
    reason: str = ""
    updated_at: float = 0.0

    @property
    def connected(self) -> bool:
        return self.status == CONNECTED


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """What may be shown about a grant without decrypting it."""

    account: str
    platform: str
    account_id: str
    expires_at: float
    status: str
    reason: str
    updated_at: float


class GrantStore(Protocol):
    """Encrypted OAuth grants by account, plus the single-use OAuth `state` values."""

    def save(self, grant: OAuthGrant) -> None:
        """Store (or replace) the account's grant."""

    def load(self, account: str) -> OAuthGrant | None:
        """The account's grant, decrypted; None when there is none. Raises
        `SecretKeyError` (adapters) when no configured key decrypts it."""

    def grants(self) -> list[GrantInfo]:
        """Every stored grant's public part, by account name."""

    def installed(self, platform: str) -> frozenset[str]:
        """The platform's account ids with a stored grant (connected or not)."""

    def installed_portals(self) -> frozenset[str]:
        """HubSpot portal ids with a stored grant (connected or not)."""

    def remove(self, account: str) -> bool:
        """Erase the account's grant; True when there was one."""

    def put_state(self, state: str, expires_at: float, verifier: str = "") -> None:
        """Remember an OAuth `state` value until `expires_at`, with its PKCE `verifier`
        (kept encrypted; '' when the app uses no PKCE)."""

    def take_state(self, state: str, now: float) -> str | None:
        """Forget `state`; its verifier ('' if none) only the first time and only before
        it expires, else None."""
