"""Public HubSpot app installs seen from the accounts: whose token is whose, which portal is
whose.

The OAuth token store keeps one grant per installed portal (`hubspot-<portalId>`). An
account reaches its portal's grant through its `account_id` (a `dcb.toml` entry with
`access_token = { store = "oauth" }`), or, for the environment's implicit account in
OAuth mode, through `DCB_HUBSPOT_PORTAL_ID`, else the one portal that installed the app.
(The two never meet: `dcb.toml`'s `[hubspot_app]` and an environment in OAuth mode are
refused together, see `connector.accounts`.)

- `AccountTokens` is the accounts' `TokenSource` (and hands the HubSpot client a token
  provider that refreshes on demand); `owner_of` says which account an installed portal
  serves, `orphans` which installs serve none (their grants stay until removed).
- `InstalledPortals` is the `PortalDirectory` the webhook routes ask: a portal belongs to
  an `app = "public"` account (or the implicit OAuth one) only once it has installed the
  app. A private app's account never receives the public app's webhooks, even for its
  own portal: its own client secret verifies its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.hubspot.client import TokenProvider
from adapters.hubspot.oauth import HubSpotTokens
from connector.accounts import IMPLICIT, PUBLIC, Account, Accounts
from connector.core.tokens import TokenUnavailable, hubspot_account
from webhooks.oauth import START_PATH


@dataclass(frozen=True)
class AccountTokens:
    """`TokenSource` over the OAuth token store, by account name."""

    tokens: HubSpotTokens
    accounts: Accounts

    def installed(self) -> frozenset[str]:
        """The portals that installed the app (connected or not)."""
        return self.tokens.installed_portals()

    def portal_of(self, name: str, installed: frozenset[str] | None = None) -> str | None:
        """The portal whose grant holds the account's HubSpot token, or None: the account
        keeps its token elsewhere, or (the implicit account) no one portal is its yet."""
        account = self.accounts.get(name)
        return self._portal(account, installed) if account is not None else None

    def owner_of(self, portal: str, installed: frozenset[str] | None = None) -> str | None:
        """The account an installed portal's webhooks belong to: the `app = "public"`
        account with its id, else the implicit account if the portal is its; None when
        the portal has not installed the app or is no account's."""
        found = self.installed() if installed is None else installed
        if portal not in found:
            return None
        owners = (a for a in self.accounts if a.hubspot_app == PUBLIC or a.name == IMPLICIT)
        return next((a.name for a in owners if self._portal(a, found) == portal), None)

    def _portal(self, account: Account, installed: frozenset[str] | None) -> str | None:
        if account.token_store is not None:
            return account.account_id("hubspot")
        if account.name != IMPLICIT or not account.settings.hubspot_oauth:
            return None
        if account.settings.hubspot_portal_id is not None:
            return account.settings.hubspot_portal_id
        found = self.installed() if installed is None else installed
        return next(iter(found)) if len(found) == 1 else None

    def orphans(self) -> frozenset[str]:
        """Installed portals no account uses: their webhooks are refused, their grants
        kept until `dcb accounts remove hubspot-<portalId>`."""
        found = self.installed()
        return frozenset(p for p in found if self.owner_of(p, found) is None)

    def access_token(self, account: str) -> str | None:
        portal = self.portal_of(account)
        return self.tokens.access_token(hubspot_account(portal)) if portal else None

    def erase(self, account: str) -> bool:
        """Erase the account's grant. An install no account uses any more (its entry left
        `dcb.toml`) is named as `dcb status` names it, `hubspot-<portalId>`."""
        portal = self.portal_of(account)
        if portal is None and self.accounts.get(account) is None:
            portal = next((p for p in self.orphans() if hubspot_account(p) == account), None)
        return self.tokens.remove(hubspot_account(portal)) if portal else False

    def provider(self, account: str) -> TokenProvider:
        """The account's HubSpot token, fresh at each call (refreshed when due or forced
        after a 401); raises `TokenUnavailable` (the writes wait) until there is one."""

        def token(force_refresh: bool = False, stale: str | None = None) -> str:
            portal = self.portal_of(account)
            if portal is None:
                raise TokenUnavailable(self._why_none())
            return self.tokens.token(
                hubspot_account(portal), force_refresh=force_refresh, stale=stale
            )

        return token

    def _why_none(self) -> str:
        installed = self.installed()
        if len(installed) > 1:
            return (
                f"{len(installed)} portals installed the app: set DCB_HUBSPOT_PORTAL_ID to the "
                "one this connector writes to"
            )
        public = self.accounts.settings.public_url or ""
        return f"no HubSpot portal has installed the app yet (open {public}{START_PATH})"


@dataclass(frozen=True)
class InstalledPortals:
    """`PortalDirectory`: a portal's account, once the portal has installed the app."""

    tokens: AccountTokens

    def account_for(self, portal_id: str) -> str | None:
        return self.tokens.owner_of(portal_id)
