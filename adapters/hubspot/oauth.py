"""HubSpot OAuth for the public app: the token endpoint, and tokens kept fresh per account.

- `HubSpotOAuthApi`: the official SDK's oauth API (`client.oauth.tokens_api`,
  `access_tokens_api`): exchange an authorization code, refresh a grant, learn the portal
  id of an access token. Answers are classified once, here:
  `GrantRevoked` (a 400/401 `BAD_REFRESH_TOKEN` / `invalid_grant`: the app was uninstalled
  or the grant revoked), `OAuthRefused` (another 4xx: a bad or reused code, a wrong client
  secret or redirect URI) and `OAuthUnavailable` (5xx, 429, transport: try again later).
- `HubSpotTokens`: the account-keyed token source the HubSpot client asks before each
  call. It refreshes a grant `REFRESH_EARLY` before it expires (HubSpot's access tokens
  last 30 minutes) and when forced (after a 401). A refresh refused as revoked marks the
  account disconnected: `TokenUnavailable` from then on, so its writes wait, until the
  portal installs the app again. `access_token(account)` is the `TokenSource` form
  (None instead of raising).

Tokens never appear in a message, a log line or a repr.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import hubspot.oauth as oauth_sdk
import urllib3
from hubspot import HubSpot

from adapters.hubspot.errors import error_body
from connector.core.redaction import scrub
from connector.core.tokens import (
    DISCONNECTED,
    GrantStore,
    OAuthGrant,
    TokenUnavailable,
    hubspot_account,
)

log = logging.getLogger("dcb.oauth")

#: Refresh this long before an access token expires, so no call carries a token that
#: expires on the way (HubSpot's last 30 minutes).
REFRESH_EARLY = 300.0
#: How long writes wait before asking again for a disconnected or absent account's token.
UNAVAILABLE_WAIT = 60.0
#: What HubSpot answers for a refresh token that no longer works (uninstall, revocation).
REVOKED_CODES = frozenset({"BAD_REFRESH_TOKEN", "invalid_grant", "unauthorized"})

Clock = Callable[[], float]


class OAuthError(Exception):
    """A token call failed; the message is safe to show (no token or secret)."""


class OAuthRefused(OAuthError):
    """HubSpot refused the request for good (a bad code, client secret, redirect URI)."""


class GrantRevoked(OAuthRefused):
    """The refresh token no longer works: the app was uninstalled or the grant revoked."""


class OAuthUnavailable(OAuthError):
    """HubSpot could not answer now (5xx, 429, timeout): try again later."""


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float


@dataclass(frozen=True, slots=True)
class OAuthClientConfig:
    """The public app's credentials and where HubSpot's API is."""

    client_id: str
    client_secret: str = field(repr=False)
    base_url: str
    timeout: float = 10.0


class HubSpotOAuthApi:
    """HubSpot's token endpoint through the official SDK."""

    def __init__(self, config: OAuthClientConfig) -> None:
        sdk = HubSpot(retry=urllib3.Retry(0, redirect=False), host=config.base_url.rstrip("/"))
        self._tokens = sdk.oauth.tokens_api  # each access builds a client: keep one
        self._info = sdk.oauth.access_tokens_api
        self._config = config

    def __repr__(self) -> str:
        return f"HubSpotOAuthApi(client_id={self._config.client_id!r})"

    def exchange(self, code: str, redirect_uri: str) -> TokenAnswer:
        """Tokens for an authorization code; raises `OAuthError`."""
        return self._token_call(
            grant_type="authorization_code", code=code, redirect_uri=redirect_uri
        )

    def refresh(self, refresh_token: str) -> TokenAnswer:
        """A new access token; raises `GrantRevoked` when the grant is gone, else `OAuthError`."""
        return self._token_call(grant_type="refresh_token", refresh_token=refresh_token)

    def portal_of(self, access_token: str) -> str:
        """The portal (hub) id an access token belongs to; raises `OAuthError`."""
        try:
            info = self._info.get(access_token, _request_timeout=self._config.timeout)
        except Exception as exc:
            raise _classified(exc, "access token info") from None
        if info.hub_id is None:
            raise OAuthRefused("access token info: HubSpot gave no hub_id")
        return str(info.hub_id)

    def _token_call(self, **form: str) -> TokenAnswer:
        try:
            answer = self._tokens.create(
                client_id=self._config.client_id,
                client_secret=self._config.client_secret,
                _request_timeout=self._config.timeout,
                **form,
            )
        except Exception as exc:
            raise _classified(exc, form["grant_type"]) from None
        if not answer.access_token or not answer.refresh_token:
            raise OAuthUnavailable(f"{form['grant_type']}: HubSpot answered without tokens")
        return TokenAnswer(answer.access_token, answer.refresh_token, float(answer.expires_in or 0))


def _classified(exc: Exception, what: str) -> OAuthError:
    if isinstance(exc, oauth_sdk.ApiException):
        status = exc.status or 0
        data = error_body(exc.body)
        code = str(data.get("status") or data.get("error") or data.get("category") or "")
        message = scrub(str(data.get("message") or data.get("error_description") or ""))
        reason = f"{what}: HubSpot answered {status} {code} {message}".strip()
        if status in (400, 401) and code in REVOKED_CODES and what == "refresh_token":
            return GrantRevoked(reason)
        if status == 429 or status >= 500 or status == 0:
            return OAuthUnavailable(reason)
        return OAuthRefused(reason)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return OAuthUnavailable(f"{what}: {type(exc).__name__} reaching HubSpot")
    return OAuthUnavailable(f"{what}: unexpected {type(exc).__name__}")


class TokenEndpoint(Protocol):
    """What `HubSpotTokens` needs of the token endpoint (`HubSpotOAuthApi`, or a fake)."""

    def refresh(self, refresh_token: str) -> TokenAnswer: ...


class DisconnectingStore(GrantStore, Protocol):
    def mark_disconnected(self, account: str, reason: str, now: float) -> None: ...


class HubSpotTokens:
    """Fresh access tokens by account, refreshed early and after a 401 (thread-safe)."""

    def __init__(
        self, store: DisconnectingStore, endpoint: TokenEndpoint, clock: Clock = time.time
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def __repr__(self) -> str:
        return "HubSpotTokens()"

    def installed_portals(self) -> frozenset[str]:
        return self._store.installed_portals()

    def remove(self, account: str) -> bool:
        return self._store.remove(account)

    def access_token(self, account: str) -> str | None:
        """The account's access token, refreshed if due; None when it has none usable."""
        try:
            return self.token(account)
        except TokenUnavailable:
            return None

    def token(self, account: str, *, force_refresh: bool = False, stale: str | None = None) -> str:
        """The account's access token, refreshed when it expires within `REFRESH_EARLY` or
        when `force_refresh` (unless another thread already replaced `stale`, the token
        that was refused). Raises `TokenUnavailable` when the account has no grant, is
        disconnected, or HubSpot cannot refresh it now."""
        with self._lock_of(account):
            grant = self._store.load(account)
            if grant is None:
                raise TokenUnavailable(
                    f"{account} has not installed the app (open /oauth/hubspot/start)",
                    UNAVAILABLE_WAIT,
                )
            if not grant.connected:
                raise TokenUnavailable(
                    f"{account} is disconnected ({grant.reason}): writes wait until the app "
                    "is installed again",
                    UNAVAILABLE_WAIT,
                )
            replaced = stale is not None and grant.access_token != stale
            due = grant.expires_at - self._clock() <= REFRESH_EARLY
            if (force_refresh and not replaced) or due:
                grant = self._refresh(grant)
            return grant.access_token

    def _refresh(self, grant: OAuthGrant) -> OAuthGrant:
        now = self._clock()
        try:
            answer = self._endpoint.refresh(grant.refresh_token)
        except GrantRevoked as exc:
            reason = f"refresh refused, app uninstalled or access revoked: {exc}"
            self._store.mark_disconnected(grant.account, reason, now)
            log.warning("%s disconnected: %s", grant.account, reason)
            raise TokenUnavailable(
                f"{grant.account} is {DISCONNECTED} ({reason})", UNAVAILABLE_WAIT
            ) from None
        except OAuthError as exc:
            if grant.expires_at > now:  # still valid a little longer: use it meanwhile
                log.warning("%s: refresh failed, using the current token: %s", grant.account, exc)
                return grant
            raise TokenUnavailable(f"{grant.account}: refresh failed: {exc}", 5.0) from None
        fresh = replace(
            grant,
            access_token=answer.access_token,
            refresh_token=answer.refresh_token or grant.refresh_token,
            expires_at=now + answer.expires_in,
            updated_at=now,
        )
        self._store.save(fresh)
        log.info("%s: access token refreshed", grant.account)
        return fresh

    def _lock_of(self, account: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(account, threading.Lock())


def grant_for(
    portal_id: str, answer: TokenAnswer, now: float, account: str | None = None
) -> OAuthGrant:
    """A new, connected grant for a portal that has just installed the app."""
    return OAuthGrant(
        account=account or hubspot_account(portal_id),
        platform="hubspot",
        account_id=portal_id,
        access_token=answer.access_token,
        refresh_token=answer.refresh_token,
        expires_at=now + answer.expires_in,
        updated_at=now,
    )
