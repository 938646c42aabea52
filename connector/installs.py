"""Public app installs seen from the accounts: whose token is whose, which portal is whose.

The OAuth token store keeps one grant per installed platform account
(`hubspot-<portalId>`, `klaviyo-<accountId>`). An account reaches its install's grant
through its `account_id` (a `dcb.toml` entry with `access_token = { store = "oauth" }` for
HubSpot, `app = "public"` and `api_key = { store = "oauth" }` for Klaviyo), or, for the
environment's implicit account in a platform's OAuth mode, through `DCB_HUBSPOT_PORTAL_ID`
/ `DCB_KLAVIYO_ACCOUNT_ID`, else the one account that installed that platform's app.
(For HubSpot the two never meet: `dcb.toml`'s `[hubspot_app]` and an environment in OAuth
mode are refused together, see `connector.accounts`.)

- `AccountTokens` is the accounts' `TokenSource` (and hands each platform client a token
  provider that refreshes on demand); `owner_of` says which account an install serves,
  `orphans` which installs serve none (their grants stay until removed).
- `InstalledPortals` is the `PortalDirectory` the HubSpot webhook routes ask: a portal
  belongs to an `app = "public"` account (or the implicit OAuth one) only once it has
  installed the app. A private app's account never receives the public app's webhooks,
  even for its own portal: its own client secret verifies its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connector.accounts import IMPLICIT, PUBLIC, Account, Accounts
from connector.core.oauth import OAuthTokens
from connector.core.tokens import TokenProvider, TokenUnavailable, account_name
from webhooks.oauth import start_path

HUBSPOT, KLAVIYO = "hubspot", "klaviyo"
#: What names an implicit account's install, per platform.
_PINNED = {HUBSPOT: "DCB_HUBSPOT_PORTAL_ID", KLAVIYO: "DCB_KLAVIYO_ACCOUNT_ID"}
_NAMES = {HUBSPOT: "HubSpot portal", KLAVIYO: "Klaviyo account"}


@dataclass(frozen=True)
class AccountTokens:
    """`TokenSource` over the OAuth token store, by account name, for every platform whose
    public app is configured (`apps`: platform -> its installs' tokens)."""

    apps: Mapping[str, OAuthTokens]
    accounts: Accounts

    @property
    def tokens(self) -> OAuthTokens | None:
        """The public HubSpot app's installs' tokens (None without that app)."""
        return self.apps.get(HUBSPOT)

    def installed(self, platform: str = HUBSPOT) -> frozenset[str]:
        """The platform account ids that installed its app (connected or not)."""
        app = self.apps.get(platform)
        return app.installed() if app is not None else frozenset()

    def account_id_of(
        self, name: str, platform: str = HUBSPOT, installed: frozenset[str] | None = None
    ) -> str | None:
        """The platform account whose grant holds the account's token, or None: the account
        keeps its token elsewhere, or (the implicit account) no one install is its yet."""
        account = self.accounts.get(name)
        return self._install(account, platform, installed) if account is not None else None

    def portal_of(self, name: str, installed: frozenset[str] | None = None) -> str | None:
        return self.account_id_of(name, HUBSPOT, installed)

    def owner_of(
        self, account_id: str, installed: frozenset[str] | None = None, platform: str = HUBSPOT
    ) -> str | None:
        """The account an install's traffic belongs to: the `app = "public"` account with
        its id, else the implicit account if the install is its; None when that platform
        account has not installed the app or is no account's."""
        found = self.installed(platform) if installed is None else installed
        if account_id not in found:
            return None
        owners = (
            a
            for a in self.accounts
            if (a.app == PUBLIC and a.platform == platform) or a.name == IMPLICIT
        )
        return next(
            (a.name for a in owners if self._install(a, platform, found) == account_id), None
        )

    def _install(
        self, account: Account, platform: str, installed: frozenset[str] | None
    ) -> str | None:
        if account.token_store is not None:
            return account.account_id(platform) if account.platform == platform else None
        oauth = (
            account.settings.hubspot_oauth
            if platform == HUBSPOT
            else account.settings.klaviyo_oauth
        )
        if account.name != IMPLICIT or not oauth or platform not in self.apps:
            return None
        pinned = account.account_id(platform)
        if pinned is not None:
            return pinned
        found = (self.installed(platform) if installed is None else installed) - self._claimed(
            platform
        )
        return next(iter(found)) if len(found) == 1 else None

    def _claimed(self, platform: str) -> frozenset[str]:
        """The installs `dcb.toml` accounts name: never the implicit account's."""
        return frozenset(
            i
            for a in self.accounts
            if a.token_store is not None
            and a.platform == platform
            and (i := a.account_id(platform)) is not None
        )

    def orphans(self) -> frozenset[str]:
        """The grants of installs no account uses (`hubspot-<portalId>`,
        `klaviyo-<accountId>`): HubSpot's webhooks for them are refused, their grants kept
        until `dcb accounts remove <grant>`."""
        gone = set()
        for platform in self.apps:
            found = self.installed(platform)
            gone |= {
                account_name(platform, i)
                for i in found
                if self.owner_of(i, found, platform) is None
            }
        return frozenset(gone)

    def access_token(self, account: str) -> str | None:
        """The account's current access token from the store: its platform's (a `dcb.toml`
        account has one), else the first platform in OAuth mode that has one."""
        for platform in self._platforms(account):
            found = self.account_id_of(account, platform)
            if found is not None:
                return self.apps[platform].access_token(account_name(platform, found))
        return None

    def erase(self, account: str) -> bool:
        """Erase the account's grants. An install no account uses any more (its entry left
        `dcb.toml`) is named as `dcb status` names it, by its grant (`hubspot-<portalId>`)."""
        if self.accounts.get(account) is None:
            platform = account.partition("-")[0]
            app = self.apps.get(platform)
            return app.remove(account) if app is not None and account in self.orphans() else False
        erased = False
        for platform in self._platforms(account):
            found = self.account_id_of(account, platform)
            if found is not None:
                erased = self.apps[platform].remove(account_name(platform, found)) or erased
        return erased

    def provider(self, account: str, platform: str = HUBSPOT) -> TokenProvider:
        """The account's token on `platform`, fresh at each call (refreshed when due or
        forced after a 401); raises `TokenUnavailable` (the writes wait) until there is
        one."""

        def token(force_refresh: bool = False, stale: str | None = None) -> str:
            found = self.account_id_of(account, platform)
            if found is None:
                raise TokenUnavailable(self._why_none(platform))
            return self.apps[platform].token(
                account_name(platform, found), force_refresh=force_refresh, stale=stale
            )

        return token

    def _platforms(self, account: str) -> tuple[str, ...]:
        found = self.accounts.get(account)
        if found is None:
            return ()
        return tuple(p for p in (found.platform,) if p) or tuple(self.apps)

    def _why_none(self, platform: str) -> str:
        installed = self.installed(platform)
        what = _NAMES[platform]
        if len(installed) > 1:
            return (
                f"{len(installed)} {what}s installed the app: set {_PINNED[platform]} to the "
                "one this connector writes to"
            )
        public = self.accounts.settings.public_url or ""
        return f"no {what} has installed the app yet (open {public}{start_path(platform)})"


@dataclass(frozen=True)
class InstalledPortals:
    """`PortalDirectory`: a portal's account, once the portal has installed the app."""

    tokens: AccountTokens

    def account_for(self, portal_id: str) -> str | None:
        return self.tokens.owner_of(portal_id)
