"""HubSpot's side of the public app's OAuth: `HubSpotOAuthApi`, the official SDK's oauth API
(`client.oauth.tokens_api`, `access_tokens_api`) as the core's `OAuthApp`: the authorize
URL, exchanging an authorization code, refreshing a grant, and learning the portal id of
an access token. Answers are classified once, here: `GrantRevoked` (a 400/401
`BAD_REFRESH_TOKEN` / `invalid_grant`: the app was uninstalled or the grant revoked),
`OAuthRefused` (another 4xx: a bad or reused code, a wrong client secret or redirect URI)
and `OAuthUnavailable` (5xx, 429, transport: try again later).

Keeping tokens fresh and installing are the same for every platform
(`connector.core.oauth`: `OAuthTokens`, `OAuthInstall`); `HubSpotTokens` is the former for
HubSpot's installs (access tokens last 30 minutes).

Tokens never appear in a message, a log line or a repr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import hubspot.oauth as oauth_sdk
import urllib3
from hubspot import HubSpot

from adapters.hubspot.errors import error_body
from connector.core.oauth import (
    REFRESH_EARLY,
    UNAVAILABLE_WAIT,
    GrantRevoked,
    OAuthError,
    OAuthRefused,
    OAuthTokens,
    OAuthUnavailable,
    TokenAnswer,
    new_grant,
)
from connector.core.redaction import scrub
from connector.core.tokens import OAuthGrant

__all__ = [
    "REFRESH_EARLY", "UNAVAILABLE_WAIT", "AUTHORIZE_URL", "GrantRevoked", "HubSpotOAuthApi",
    "HubSpotTokens", "OAuthClientConfig", "OAuthError", "OAuthRefused", "OAuthUnavailable",
    "TokenAnswer", "grant_for",
]  # fmt: skip

AUTHORIZE_URL = "https://app.hubspot.com/oauth/authorize"
#: What HubSpot answers for a refresh token that no longer works (uninstall, revocation).
REVOKED_CODES = frozenset({"BAD_REFRESH_TOKEN", "invalid_grant", "unauthorized"})
#: HubSpot's installs' tokens, kept fresh (the core's `OAuthTokens`, platform "hubspot").
HubSpotTokens = OAuthTokens

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

    platform = "hubspot"
    pkce = False  # HubSpot's flow has no PKCE: the state and the client secret guard it

    def authorize_url(
        self, *, redirect_uri: str, scopes: Sequence[str], state: str, code_challenge: str | None
    ) -> str:
        query = {
            "client_id": self._config.client_id,
            "scope": " ".join(scopes),
            "redirect_uri": redirect_uri,
            "state": state,
        }
        return f"{AUTHORIZE_URL}?{urlencode(query)}"

    def exchange(self, code: str, redirect_uri: str, verifier: str | None = None) -> TokenAnswer:
        """Tokens for an authorization code; raises `OAuthError`."""
        return self._token_call(
            grant_type="authorization_code", code=code, redirect_uri=redirect_uri
        )

    def refresh(self, refresh_token: str) -> TokenAnswer:
        """A new access token; raises `GrantRevoked` when the grant is gone, else `OAuthError`."""
        return self._token_call(grant_type="refresh_token", refresh_token=refresh_token)

    def account_of(self, access_token: str) -> str:
        return self.portal_of(access_token)

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


def grant_for(portal_id: str, answer: TokenAnswer, now: float) -> OAuthGrant:
    """A new, connected grant for a portal that has just installed the app."""
    return new_grant("hubspot", portal_id, answer, now)
