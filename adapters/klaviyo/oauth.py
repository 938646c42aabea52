"""Klaviyo's side of an OAuth app: `KlaviyoOAuthApi`, the core's `OAuthApp` for Klaviyo.

Klaviyo's authorization-code flow requires PKCE (S256): the browser goes to
`https://www.klaviyo.com/oauth/authorize` with the code challenge, and the code is
exchanged with its verifier. The token endpoint (`POST {api}/oauth/token`, on
`a.klaviyo.com`) is a plain form POST authenticated with HTTP Basic (client id and
secret): the SDK has no token API, so it is made with `requests`. Access tokens last about
an hour; the SDK then takes one as `Authorization: Bearer` (`KlaviyoClient` with a token
provider). Which account installed is learnt with the new token (`Accounts.get_accounts`).

Answers are classified once, here: `GrantRevoked` (a refresh answered 400 `invalid_grant`:
the app was uninstalled or the grant revoked), `OAuthRefused` (another 4xx: a bad or reused
code, a wrong PKCE verifier, client secret or redirect URI) and `OAuthUnavailable` (5xx,
429, transport: try again later). Messages carry Klaviyo's error code and description,
scrubbed, never a token or a secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException
from openapi_client.rest import RESTClientObject

from adapters.klaviyo.errors import error_message
from connector.core.oauth import (
    GrantRevoked,
    OAuthError,
    OAuthRefused,
    OAuthUnavailable,
    TokenAnswer,
)
from connector.core.redaction import scrub

AUTHORIZE_URL = "https://www.klaviyo.com/oauth/authorize"
TOKEN_PATH = "/oauth/token"
#: What Klaviyo answers for a refresh token that no longer works (uninstall, revocation).
REVOKED_CODES = frozenset({"invalid_grant"})
#: The access token's life when Klaviyo does not say (it documents an hour).
DEFAULT_EXPIRES_IN = 3600.0


@dataclass(frozen=True, slots=True)
class KlaviyoOAuthConfig:
    """The OAuth app's credentials and where Klaviyo's API is."""

    client_id: str
    client_secret: str = field(repr=False)
    base_url: str
    timeout: float = 10.0


class KlaviyoOAuthApi:
    """Klaviyo's token endpoint (a form POST) and the installing account's id (the SDK)."""

    platform = "klaviyo"
    pkce = True

    def __init__(self, config: KlaviyoOAuthConfig, session: requests.Session | None = None) -> None:
        self._config = config
        self._session = session or requests.Session()
        self._base = config.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"KlaviyoOAuthApi(client_id={self._config.client_id!r})"

    def authorize_url(
        self, *, redirect_uri: str, scopes: Sequence[str], state: str, code_challenge: str | None
    ) -> str:
        if not code_challenge:
            raise ValueError("Klaviyo's OAuth requires a PKCE code challenge")
        query = {
            "response_type": "code",
            "client_id": self._config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            "code_challenge_method": "S256",
            "code_challenge": code_challenge,
        }
        return f"{AUTHORIZE_URL}?{urlencode(query)}"

    def exchange(self, code: str, redirect_uri: str, verifier: str | None = None) -> TokenAnswer:
        """Tokens for an authorization code and its PKCE verifier; raises `OAuthError`."""
        if not verifier:
            raise OAuthRefused("authorization_code: no PKCE code verifier for this install")
        return self._token_call(
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
        )

    def refresh(self, refresh_token: str) -> TokenAnswer:
        """A new access token; raises `GrantRevoked` when the grant is gone, else `OAuthError`."""
        return self._token_call(grant_type="refresh_token", refresh_token=refresh_token)

    def account_of(self, access_token: str) -> str:
        """The Klaviyo account id the access token is for (`GET /api/accounts`); raises
        `OAuthError`."""
        api = KlaviyoAPI(
            None,
            access_token=access_token,
            max_retries=1,
            test_host=self._base,
            options={"USE_DICTIONARY_FOR_RESPONSE_DATA": True},
        )
        api.api_client.configuration.retries = urllib3.Retry(0, redirect=False)
        api.api_client.rest_client = RESTClientObject(api.api_client.configuration)
        try:
            answer = api.Accounts.get_accounts(_request_timeout=self._config.timeout)
        except ApiException as exc:
            status = exc.status or 0
            reason = f"accounts: Klaviyo answered {status} {error_message(exc.body)}".strip()
            if status == 429 or status >= 500 or status == 0:
                raise OAuthUnavailable(reason) from None
            raise OAuthRefused(reason) from None
        except urllib3.exceptions.HTTPError as exc:
            raise OAuthUnavailable(f"accounts: {type(exc).__name__} reaching Klaviyo") from None
        data = answer.get("data") if isinstance(answer, dict) else None
        first = data[0] if isinstance(data, list) and data else None
        account_id = first.get("id") if isinstance(first, dict) else None
        if not account_id:
            raise OAuthRefused("accounts: Klaviyo named no account for the token")
        return str(account_id)

    def _token_call(self, **form: str) -> TokenAnswer:
        what = form["grant_type"]
        try:
            response = self._session.post(
                self._base + TOKEN_PATH,
                data=form,
                auth=(self._config.client_id, self._config.client_secret),
                headers={"Accept": "application/json"},
                timeout=self._config.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise OAuthUnavailable(f"{what}: {type(exc).__name__} reaching Klaviyo") from None
        body = _json(response)
        if response.status_code != 200:
            raise _classified(response.status_code, body, what)
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise OAuthUnavailable(f"{what}: Klaviyo answered without an access token")
        if what == "authorization_code" and not refresh:
            raise OAuthUnavailable(f"{what}: Klaviyo answered without a refresh token")
        expires = body.get("expires_in")
        seconds = float(expires) if isinstance(expires, int | float) else DEFAULT_EXPIRES_IN
        return TokenAnswer(access, str(refresh or ""), seconds)


def _classified(status: int, body: dict[str, Any], what: str) -> OAuthError:
    code = str(body.get("error") or "")
    detail = scrub(str(body.get("error_description") or error_message(body) or ""))
    reason = f"{what}: Klaviyo answered {status} {code} {detail}".strip()
    if status in (400, 401) and code in REVOKED_CODES and what == "refresh_token":
        return GrantRevoked(reason)
    if status == 429 or status >= 500:
        return OAuthUnavailable(reason)
    return OAuthRefused(reason)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
