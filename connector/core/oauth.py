"""A public app's OAuth, whatever the platform: installs, and access tokens kept fresh.

Each platform adapter gives its token endpoint and authorize page as an `OAuthApp`
(`adapters/hubspot/oauth.py` through HubSpot's SDK, `adapters/klaviyo/oauth.py` with a
form POST); everything else is the same for both and lives here:

- `OAuthInstall`: the authorization-code flow. `start()` makes a signed, single-use state
  (and, for an app that needs PKCE, a code verifier kept server-side with the state: only
  its S256 challenge goes in the URL); `finish(code, state, cookie)` checks the state,
  exchanges the code, learns the installing account's id, stores its grant and provisions
  it. Raises `InstallRefused` with a reason fit for the browser.
- `OAuthTokens`: the account-keyed token source each platform client asks before a call.
  It refreshes a grant `REFRESH_EARLY` before it expires and when forced (after a 401); a
  refresh refused as revoked marks the account disconnected (`TokenUnavailable` from then
  on, so its writes wait) until the account installs the app again.

Errors of a token call, classified once by the adapter that made it:

    OAuthError
    ├── OAuthRefused        a bad or reused code, a wrong client secret or PKCE verifier
    │   └── GrantRevoked    the refresh token no longer works (uninstalled, revoked)
    └── OAuthUnavailable    5xx, 429, transport: try again later

The clock and the nonce maker are injected. Tokens never appear in a message, a log line
or a repr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from connector.core.ports import ProvisionReport
from connector.core.tokens import (
    DISCONNECTED,
    GrantStore,
    OAuthGrant,
    TokenUnavailable,
    account_name,
)

log = logging.getLogger("dcb.oauth")

#: Refresh this long before an access token expires, so no call carries a token that
#: expires on the way (HubSpot's last 30 minutes, Klaviyo's an hour).
REFRESH_EARLY = 300.0
#: How long writes wait before asking again for a disconnected or absent account's token.
UNAVAILABLE_WAIT = 60.0
#: How long an install may take between start and callback.
STATE_TTL = 600.0

Clock = Callable[[], float]


class OAuthError(Exception):
    """A token call failed; the message is safe to show (no token or secret)."""


class OAuthRefused(OAuthError):
    """The platform refused the request for good (a bad code, client secret, verifier)."""


class GrantRevoked(OAuthRefused):
    """The refresh token no longer works: the app was uninstalled or the grant revoked."""


class OAuthUnavailable(OAuthError):
    """The platform could not answer now (5xx, 429, timeout): try again later."""


class InstallRefused(Exception):
    """The callback cannot be accepted; the message is safe to show the browser."""


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float


class TokenEndpoint(Protocol):
    """What `OAuthTokens` needs of a platform's token endpoint."""

    def refresh(self, refresh_token: str) -> TokenAnswer:
        """A new access token; raises `GrantRevoked` when the grant is gone, else
        `OAuthError`."""
        ...


class OAuthApp(TokenEndpoint, Protocol):
    """A platform's public app: its authorize page, token endpoint and whose a token is."""

    platform: str
    pkce: bool  # the app sends a code challenge and proves it with the verifier

    def authorize_url(
        self, *, redirect_uri: str, scopes: Sequence[str], state: str, code_challenge: str | None
    ) -> str:
        """Where the browser asks the user to install the app."""
        ...

    def exchange(self, code: str, redirect_uri: str, verifier: str | None = None) -> TokenAnswer:
        """Tokens for an authorization code; raises `OAuthError`."""
        ...

    def account_of(self, access_token: str) -> str:
        """The platform account id (HubSpot portal, Klaviyo account) the token is for;
        raises `OAuthError`."""
        ...


class DisconnectingStore(GrantStore, Protocol):
    def mark_disconnected(self, account: str, reason: str, now: float) -> None: ...


def new_grant(platform: str, account_id: str, answer: TokenAnswer, now: float) -> OAuthGrant:
    """A new, connected grant for an account that has just installed the app."""
    return OAuthGrant(
        account=account_name(platform, account_id),
        platform=platform,
        account_id=account_id,
        access_token=answer.access_token,
        refresh_token=answer.refresh_token,
        expires_at=now + answer.expires_in,
        updated_at=now,
    )


def code_challenge(verifier: str) -> str:
    """PKCE's S256 challenge of a verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class OAuthTokens:
    """Fresh access tokens of one platform's installs, by grant name, refreshed early and
    after a 401 (thread-safe)."""

    def __init__(
        self,
        store: DisconnectingStore,
        endpoint: TokenEndpoint,
        clock: Clock,
        *,
        platform: str = "hubspot",
        install_path: str = "/oauth/hubspot/start",
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._clock = clock
        self.platform = platform
        self._install_path = install_path
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OAuthTokens({self.platform!r})"

    def installed(self) -> frozenset[str]:
        """The platform account ids with a stored grant (connected or not)."""
        return self._store.installed(self.platform)

    def installed_portals(self) -> frozenset[str]:
        return self.installed()

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
        disconnected, or the platform cannot refresh it now."""
        with self._lock_of(account):
            grant = self._store.load(account)
            if grant is None:
                raise TokenUnavailable(
                    f"{account} has not installed the app (open {self._install_path})",
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


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the state to set as its cookie."""

    url: str
    state: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Installed:
    platform: str
    account_id: str  # the platform's: HubSpot portal id, Klaviyo account id
    account: str  # the grant's name: `<platform>-<account_id>`
    provisioning: ProvisionReport

    @property
    def portal_id(self) -> str:
        return self.account_id


@dataclass(frozen=True, slots=True)
class InstallConfig:
    redirect_uri: str
    scopes: Sequence[str]
    signing_key: bytes = field(repr=False)


class OAuthInstall:
    """Installing a public app on a platform account.

    The state guards against CSRF three ways: it is signed (HMAC with a key of our own),
    bound to the browser that started (it must equal the cookie set at `start`), and
    single-use (remembered in the shared store until used or `STATE_TTL` passes). A PKCE
    verifier is stored with it (encrypted, by the store) and taken with it."""

    def __init__(
        self,
        config: InstallConfig,
        app: OAuthApp,
        store: GrantStore,
        provision: Callable[[str], ProvisionReport],
        clock: Clock,
        nonce: Callable[[], str],
    ) -> None:
        self._config = config
        self._app = app
        self._store = store
        self._provision = provision
        self._clock = clock
        self._nonce = nonce

    def __repr__(self) -> str:
        return f"OAuthInstall({self._app.platform!r})"

    @property
    def platform(self) -> str:
        return self._app.platform

    def start(self) -> Started:
        """A fresh signed state (and verifier), remembered until used, and the authorize
        URL carrying the state (and the verifier's challenge)."""
        nonce = self._nonce()
        expires = int(self._clock() + STATE_TTL)
        state = f"{nonce}.{expires}.{self._sign(nonce, expires)}"
        verifier = self._nonce() + self._nonce() if self._app.pkce else ""
        self._store.put_state(nonce, float(expires), verifier)
        url = self._app.authorize_url(
            redirect_uri=self._config.redirect_uri,
            scopes=self._config.scopes,
            state=state,
            code_challenge=code_challenge(verifier) if verifier else None,
        )
        return Started(url, state)

    def finish(self, code: str | None, state: str | None, cookie: str | None) -> Installed:
        """Check the state, exchange the code, store the tokens, provision the account.
        Raises `InstallRefused` with a reason fit for the browser."""
        verifier = self._check_state(state, cookie)
        if not code:
            raise InstallRefused("the platform sent no authorization code")
        try:
            answer = self._app.exchange(code, self._config.redirect_uri, verifier or None)
            account_id = self._app.account_of(answer.access_token)
        except OAuthError as exc:
            log.warning("install refused: %s", exc)
            raise InstallRefused(f"the install was not accepted: {exc}") from None
        grant = new_grant(self._app.platform, account_id, answer, self._clock())
        self._store.save(grant)
        log.info("%s account %s installed the app", self._app.platform, account_id)
        try:
            report = self._provision(grant.account)
        except Exception as exc:  # tokens are stored; provisioning runs again at start-up
            report = ProvisionReport(problems=(f"provisioning failed: {type(exc).__name__}",))
        if report.problems:
            log.error("%s provisioning: %s", grant.account, "; ".join(report.problems))
        return Installed(self._app.platform, account_id, grant.account, report)

    def _check_state(self, state: str | None, cookie: str | None) -> str:
        """The state's verifier ('' without PKCE); raises `InstallRefused`."""
        if not state:
            raise InstallRefused("the install link carried no state: start again")
        if not cookie or not hmac.compare_digest(state, cookie):
            raise InstallRefused(
                "this install was not started in this browser (state and cookie differ): "
                "start again"
            )
        nonce, _, rest = state.partition(".")
        expires, _, signature = rest.partition(".")
        if not expires.isdigit() or not hmac.compare_digest(
            signature, self._sign(nonce, int(expires))
        ):
            raise InstallRefused("the install state is not ours: start again")
        verifier = self._store.take_state(nonce, self._clock())
        if verifier is None:
            raise InstallRefused("the install state was already used or has expired: start again")
        return verifier

    def _sign(self, nonce: str, expires: int) -> str:
        message = f"{self._app.platform}.{nonce}.{expires}".encode()
        mac = hmac.new(self._config.signing_key, message, hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
