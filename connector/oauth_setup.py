"""Public apps' OAuth, wired: the encrypted grant store, each platform's OAuth app, the
accounts' view of the installs, and the install routes' flows."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence

from adapters.hubspot.oauth import HubSpotOAuthApi, OAuthClientConfig
from adapters.klaviyo.oauth import KlaviyoOAuthApi, KlaviyoOAuthConfig
from adapters.storage.token_store import (
    RedisGrantStore,
    SecretKeyError,
    SqliteGrantStore,
    TokenCipher,
)
from connector.accounts import Accounts
from connector.clients import hubspot_client, klaviyo_client
from connector.core.oauth import (
    InstallConfig,
    InstallRefused,
    OAuthApp,
    OAuthInstall,
    OAuthTokens,
)
from connector.core.ports import (
    ProvisionReport,
    TokenSource,
)
from connector.installs import AccountTokens
from connector.manifest import load_manifest
from connector.runtime import STORE_FILE, Runtime, Shared
from connector.settings import Secret, Settings, SettingsError
from webhooks.oauth import (
    PLATFORM_NAMES,
    InstallFlow,
    InstallPage,
    start_path,
)

Grants = SqliteGrantStore | RedisGrantStore


def open_grants(settings: Settings, shared: Shared | None = None) -> Grants:
    """The encrypted OAuth token store, beside the pipeline's data. Raises `SettingsError`
    when tokens are stored and no key in `DCB_SECRET_KEY` reads them: never a traceback,
    never a key generated here."""
    backend = shared or Shared.from_settings(settings)
    cipher = TokenCipher([k.value for k in settings.secret_keys]) if settings.secret_keys else None
    grants: Grants
    if backend.redis is not None:
        grants = RedisGrantStore(backend.redis, backend.keys, cipher)
    else:
        grants = SqliteGrantStore(settings.data_dir / STORE_FILE, cipher)
    try:
        grants.check()
    except SecretKeyError as exc:
        grants.close()
        raise SettingsError([str(exc)]) from None
    return grants


def oauth_apps(settings: Settings, app_secrets: Sequence[Secret]) -> dict[str, OAuthApp]:
    """Each platform's public (OAuth) app that is configured, by platform: HubSpot's with
    `DCB_HUBSPOT_CLIENT_ID` and its client secret (`app_secrets`:
    `Accounts.oauth_app_secrets`), Klaviyo's with `DCB_KLAVIYO_CLIENT_ID` and
    `DCB_KLAVIYO_CLIENT_SECRET`."""
    apps: dict[str, OAuthApp] = {}
    if settings.hubspot_client_id is not None and app_secrets:
        apps["hubspot"] = HubSpotOAuthApi(
            OAuthClientConfig(
                settings.hubspot_client_id, app_secrets[0].value, settings.hubspot_api_url
            )
        )
    if settings.klaviyo_client_id is not None and settings.klaviyo_client_secret is not None:
        apps["klaviyo"] = KlaviyoOAuthApi(
            KlaviyoOAuthConfig(
                settings.klaviyo_client_id,
                settings.klaviyo_client_secret.value,
                settings.klaviyo_api_url,
            )
        )
    return apps


def account_tokens(accounts: Accounts, grants: Grants, runtime: Runtime) -> AccountTokens | None:
    """The accounts' view of the OAuth token store: stored tokens, refreshed through each
    platform's token endpoint when due (None without a public app)."""
    apps = oauth_apps(accounts.settings, accounts.oauth_app_secrets)
    if not apps:
        return None
    tokens = {
        platform: OAuthTokens(
            grants, app, runtime.epoch, platform=platform, install_path=start_path(platform)
        )
        for platform, app in apps.items()
    }
    return AccountTokens(tokens, accounts)


def install_flows(
    settings: Settings,
    grants: Grants,
    installs: AccountTokens,
    runtime: Runtime,
    app_secrets: Sequence[Secret],
) -> dict[str, InstallFlow]:
    """Each public app's install routes' service, wired: state (and PKCE), code exchange,
    storage, provisioning of the new account."""
    first_key = settings.secret_keys[0].value.encode()
    signing_key = hashlib.sha256(b"dcb-oauth-state:" + first_key).digest()
    secure = (settings.public_url or "").startswith("https://")
    manifest = load_manifest()
    flows = {}
    for platform, app in oauth_apps(settings, app_secrets).items():
        if platform == "hubspot":
            redirect, scopes = settings.hubspot_redirect_uri, settings.hubspot_scopes
            scopes = scopes or manifest.hubspot.scopes
        else:
            redirect, scopes = settings.klaviyo_redirect_uri, settings.klaviyo_scopes
            scopes = scopes or manifest.klaviyo.scopes
        config = InstallConfig(redirect or "", scopes, signing_key)
        provision = _provisioner(settings, installs.apps[platform], runtime)
        install = OAuthInstall(
            config, app, grants, provision, runtime.epoch, lambda: secrets.token_urlsafe(24)
        )
        flows[platform] = _flow(install, secure)
    return flows


def _provisioner(
    settings: Settings, tokens: OAuthTokens, runtime: Runtime
) -> Callable[[str], ProvisionReport]:
    """Provisioning (HubSpot's properties) or the access check (Klaviyo) of a new
    install's account, with its fresh token."""

    def provision(grant: str) -> ProvisionReport:
        def provider(force_refresh: bool = False, stale: str | None = None) -> str:
            return tokens.token(grant, force_refresh=force_refresh, stale=stale)

        if tokens.platform == "hubspot":
            return hubspot_client(settings, provider, runtime)[0].provision()
        return klaviyo_client(settings, provider, runtime)[0].provision()

    return provision


def _flow(install: OAuthInstall, secure: bool) -> InstallFlow:
    hubspot = install.platform == "hubspot"
    what = "HubSpot portal" if hubspot else f"{PLATFORM_NAMES[install.platform]} account"
    ready = (
        "its dcb_* contact properties are ready"
        if hubspot
        else "the connector can write its profiles' dcb_* properties"
    )

    def start() -> tuple[str, str]:
        started = install.start()
        return started.url, started.state

    def finish(code: str | None, state: str | None, cookie: str | None) -> InstallPage:
        try:
            done = install.finish(code, state, cookie)
        except InstallRefused as exc:
            return InstallPage(False, "The app was not installed", str(exc))
        if done.provisioning.problems:
            detail = (
                f"{what} {done.account_id} is connected, but its check failed "
                f"({'; '.join(done.provisioning.problems)}); the connector tries again at "
                "its next start."
            )
        else:
            detail = f"{what} {done.account_id} is connected and {ready}. You can close this page."
        return InstallPage(True, "The app is installed", detail)

    return InstallFlow(start, finish, secure_cookie=secure)


def token_source(accounts: Accounts) -> TokenSource | None:
    """For the `dcb accounts` commands: the encrypted token store, for credentials kept
    there (`access_token = { store = "oauth" }`); None without a public app. Raises
    `SettingsError` when stored tokens cannot be read with `DCB_SECRET_KEY`."""
    grants = open_grants(accounts.settings)  # open for the life of the command
    return account_tokens(accounts, grants, Runtime())
