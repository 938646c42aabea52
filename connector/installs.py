"""Public HubSpot app installs seen from the accounts: whose token is whose, which portal is
whose.

The OAuth token store keeps one grant per installed portal (`hubspot-<portalId>`). An
account reaches its portal's grant through its `account_id` (a `dcb.toml` entry with
`access_token = { store = "oauth" }`), or, for the environment's implicit account in
OAuth mode, through `DCB_HUBSPOT_PORTAL_ID`, else the one portal that installed the app.

- `AccountTokens` is the accounts' `TokenSource` (and hands the HubSpot client a token
  provider that refreshes on demand).
- `InstalledPortals` is the `PortalDirectory` the webhook routes ask: a portal belongs to
  an account only once it has installed the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters.hubspot.client import TokenProvider
from adapters.hubspot.oauth import HubSpotTokens
from connector.accounts import IMPLICIT, Accounts
from connector.core.tokens import TokenUnavailable, hubspot_account
from webhooks.oauth import START_PATH


@dataclass(frozen=True)
class AccountTokens:
    """`TokenSource` over the OAuth token store, by account name."""

    tokens: HubSpotTokens
    accounts: Accounts

    def portal_of(self, name: str) -> str | None:
        """The portal whose install holds the account's token, or None (not one yet)."""
        account = self.accounts.get(name)
        if account is None:
            return None
        portal = account.account_id("hubspot")
        if portal is not None or name != IMPLICIT or not self.accounts.settings.hubspot_oauth:
            return portal
        installed = sorted(self.tokens.installed_portals())
        return installed[0] if len(installed) == 1 else None

    def access_token(self, account: str) -> str | None:
        portal = self.portal_of(account)
        return self.tokens.access_token(hubspot_account(portal)) if portal else None

    def erase(self, account: str) -> bool:
        portal = self.portal_of(account)
        return self.tokens.remove(hubspot_account(portal)) if portal else False

    def provider(self, account: str) -> TokenProvider:
        """The account's HubSpot token, fresh at each call (refreshed when due or forced
        after a 401); raises `TokenUnavailable` (the writes wait) until there is one."""

        def token(force_refresh: bool = False, stale: str | None = None) -> str:
            portal = self.portal_of(account)
            if portal is None:
                raise TokenUnavailable(self._why_none(account))
            return self.tokens.token(
                hubspot_account(portal), force_refresh=force_refresh, stale=stale
            )

        return token

    def _why_none(self, account: str) -> str:
        installed = self.tokens.installed_portals()
        if len(installed) > 1:
            return (
                f"{len(installed)} portals installed the app: set DCB_HUBSPOT_PORTAL_ID to the "
                "one this connector writes to"
            )
        public = self.accounts.settings.public_url or ""
        return f"no HubSpot portal has installed the app yet (open {public}{START_PATH})"


@dataclass(frozen=True)
class InstalledPortals:
    """`PortalDirectory`: a portal's account once the portal has installed the app."""

    tokens: AccountTokens
    configured: Mapping[str, str]  # portal id -> the account `dcb.toml` gives it

    def account_for(self, portal_id: str) -> str | None:
        if portal_id not in self.tokens.tokens.installed_portals():
            return None
        if portal_id in self.configured:
            return self.configured[portal_id]
        return IMPLICIT if self.tokens.portal_of(IMPLICIT) == portal_id else None
