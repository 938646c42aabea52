"""Installing the public HubSpot app on a portal: the OAuth authorization-code flow.

`HubSpotInstall.start()` makes a `state` and the HubSpot authorize URL; the web edge
redirects the browser there and sets the state's cookie. `finish(code, state, cookie)`
runs when HubSpot sends the browser back: it checks the state, exchanges the code, learns
the portal id, stores the portal's tokens (encrypted, by the store) and provisions the
portal's `dcb_*` properties.

The state guards against CSRF three ways: it is signed (HMAC with a key of our own), it is
bound to the browser that started (it must equal the cookie set at `start`), and it is
single-use (remembered in the shared store until used or `STATE_TTL` passes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from adapters.hubspot.oauth import HubSpotOAuthApi, OAuthError, grant_for
from connector.core.ports import ProvisionReport
from connector.core.tokens import GrantStore, hubspot_account

log = logging.getLogger("dcb.oauth")

AUTHORIZE_URL = "https://app.hubspot.com/oauth/authorize"
#: How long an install may take between start and callback.
STATE_TTL = 600.0


class InstallRefused(Exception):
    """The callback cannot be accepted; the message is safe to show the browser."""


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the browser, and the state to set as its cookie."""

    url: str
    state: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Installed:
    portal_id: str
    account: str
    provisioning: ProvisionReport


@dataclass(frozen=True, slots=True)
class InstallConfig:
    client_id: str
    redirect_uri: str
    scopes: Sequence[str]
    signing_key: bytes = field(repr=False)
    optional_scopes: Sequence[str] = ()


class HubSpotInstall:
    def __init__(
        self,
        config: InstallConfig,
        api: HubSpotOAuthApi,
        store: GrantStore,
        provision: Callable[[str], ProvisionReport],
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._api = api
        self._store = store
        self._provision = provision
        self._clock = clock

    def __repr__(self) -> str:
        return f"HubSpotInstall(client_id={self._config.client_id!r})"

    def start(self) -> Started:
        """A fresh signed state, remembered until used, and the authorize URL carrying it."""
        nonce = secrets.token_urlsafe(24)
        expires = self._clock() + STATE_TTL
        state = f"{nonce}.{int(expires)}.{self._sign(nonce, int(expires))}"
        self._store.put_state(nonce, expires)
        query = {
            "client_id": self._config.client_id,
            "scope": " ".join(self._config.scopes),
            "redirect_uri": self._config.redirect_uri,
            "state": state,
        }
        if self._config.optional_scopes:
            query["optional_scope"] = " ".join(self._config.optional_scopes)
        return Started(f"{AUTHORIZE_URL}?{urlencode(query)}", state)

    def finish(self, code: str | None, state: str | None, cookie: str | None) -> Installed:
        """Check the state, exchange the code, store the tokens, provision the portal.
        Raises `InstallRefused` with a reason fit for the browser."""
        self._check_state(state, cookie)
        if not code:
            raise InstallRefused("HubSpot sent no authorization code")
        try:
            answer = self._api.exchange(code, self._config.redirect_uri)
            portal = self._api.portal_of(answer.access_token)
        except OAuthError as exc:
            log.warning("install refused: %s", exc)
            raise InstallRefused(f"HubSpot did not accept the install: {exc}") from None
        now = self._clock()
        account = hubspot_account(portal)
        self._store.save(grant_for(portal, answer, now, account))
        log.info("portal %s installed the app (account %s)", portal, account)
        try:
            report = self._provision(account)
        except Exception as exc:  # tokens are stored; provisioning runs again at start-up
            report = ProvisionReport(problems=(f"provisioning failed: {type(exc).__name__}",))
        if report.problems:
            log.error("%s provisioning: %s", account, "; ".join(report.problems))
        return Installed(portal, account, report)

    def _check_state(self, state: str | None, cookie: str | None) -> str:
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
        if not self._store.take_state(nonce, self._clock()):
            raise InstallRefused("the install state was already used or has expired: start again")
        return nonce

    def _sign(self, nonce: str, expires: int) -> str:
        mac = hmac.new(self._config.signing_key, f"{nonce}.{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
