"""The accounts one connector serves: the environment's implicit one, and `dcb.toml`'s.

Without `DCB_CONFIG` the `DCB_*` variables describe one account, `default` (none when
they name no platform credential). `DCB_CONFIG` names a `dcb.toml` listing more:

    [[accounts]]
    name = "shop-one"                 # lower case letters, digits, - and _
    platform = "hubspot"              # or "klaviyo"
    account_id = "4410001"            # HubSpot portal id / Klaviyo account id
    access_token = { env = "SHOP1_HUBSPOT_TOKEN" }
    client_secret = { env = "SHOP1_HUBSPOT_SECRET" }
    rules = "rules/shop-one.yaml"     # relative to the file
    rate = 190
    abandon_after = "45m"

Each account's `Settings` start from the environment's and take what its entry sets: a
setting in an entry overrides the environment's. Credentials are the exception: an
account only ever has its own (an entry named `default` refines the environment's
account, credentials included). The implicit account still exists beside the file's.

A HubSpot account with `app = "public"` is an install of the public app: the file's
`[hubspot_app] client_secret` verifies its webhooks, its `account_id` (portal id) says
which are its, and its access token comes from the token store. A Klaviyo account with
`app = "public"` and `api_key = { store = "oauth" }` is an install of the Klaviyo OAuth app
(`DCB_KLAVIYO_CLIENT_ID` / `_SECRET`): its `account_id` names the installed account whose
tokens it writes with; its webhooks are verified by its own secrets, as any account's.

`load_accounts` raises `SettingsError` (a `ConfigError` for the file) listing every
problem, each with its file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connector.config_file import (
    EnvRef,
    Problems,
    Reference,
    StoreRef,
    read_toml,
    reference,
)
from connector.core.durations import parse_duration
from connector.core.ports import TokenSource
from connector.settings import Secret, Settings, SettingsError, normal_domain, normal_origin

IMPLICIT = "default"
PLATFORMS = ("hubspot", "klaviyo")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
PRIVATE, PUBLIC = "private", "public"

#: Entry keys: those every account may set, and each platform's.
COMMON_KEYS = ("name", "platform", "account_id", "rules", "abandon_after", "events_api_key",
               "publishable_key", "allowed_origins", "shop_domains", "identity_secret")
PLATFORM_KEYS: dict[str, tuple[str, ...]] = {
    "hubspot": ("access_token", "client_secret", "app", "rate", "api_url"),
    "klaviyo": ("api_key", "flow_token", "webhook_secret", "app", "api_url"),
}  # fmt: skip
#: Which `Settings` field each credential key fills, per platform (None: both).
_CREDENTIALS: dict[tuple[str, str | None], str] = {
    ("access_token", "hubspot"): "hubspot_access_token",
    ("client_secret", "hubspot"): "hubspot_client_secrets",
    ("api_key", "klaviyo"): "klaviyo_api_key",
    ("flow_token", "klaviyo"): "klaviyo_flow_tokens",
    ("webhook_secret", "klaviyo"): "klaviyo_webhook_secrets",
    ("events_api_key", None): "events_api_keys",
    ("identity_secret", None): "identity_secrets",
}
#: Credentials (and what pins them to one platform account) nobody inherits.
_OWN = ("hubspot_access_token", "hubspot_client_secrets", "hubspot_portal_id", "hubspot_app_id",
        "klaviyo_api_key", "klaviyo_flow_tokens", "klaviyo_webhook_secrets",
        "klaviyo_account_id", "events_api_keys", "publishable_keys", "allowed_origins",
        "shop_domains", "identity_secrets")  # fmt: skip
#: The secrets that decide which account a request belongs to: no two accounts share one.
_DECIDING = {
    "hubspot_client_secrets": "HubSpot client secret",
    "klaviyo_flow_tokens": "Klaviyo flow token",
    "klaviyo_webhook_secrets": "Klaviyo webhook secret",
    "events_api_keys": "events API key",
}


class ConfigError(SettingsError):
    """The accounts file is invalid; the message lists every problem with file and line."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        ValueError.__init__(self, f"invalid {path}:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Account:
    """One account: its name, its own `Settings`, and where it was defined."""

    name: str
    settings: Settings
    origin: str = "environment"
    platform: str | None = None  # None: the implicit account, on whatever the env configures
    app: str = PRIVATE  # PUBLIC: an install of the platform's public (OAuth) app
    token_store: str | None = None  # where its access token lives, when not in the environment

    @property
    def hubspot_app(self) -> str:
        """PUBLIC for an install of the public HubSpot app (verified by the app's secret and
        its portal id)."""
        return self.app if self.platform == "hubspot" else PRIVATE

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms it writes to, in a fixed order."""
        s = self.settings
        on = {  # the implicit account in OAuth mode writes through the installed portal's
            "hubspot": s.hubspot_access_token is not None
            or (self.platform is None and s.hubspot_oauth),
            "klaviyo": s.klaviyo_api_key is not None
            or (self.platform is None and s.klaviyo_oauth),
        }
        if self.token_store is not None and self.platform is not None:
            on[self.platform] = True
        return tuple(p for p in PLATFORMS if on[p])

    def account_id(self, platform: str) -> str | None:
        """Its id on the platform (HubSpot portal id, Klaviyo account id), when known."""
        s = self.settings
        return s.hubspot_portal_id if platform == "hubspot" else s.klaviyo_account_id

    def access_token(self, platform: str, tokens: TokenSource | None) -> str | None:
        """The credential to call `platform` with: from the environment, else the store."""
        secret = (
            self.settings.hubspot_access_token
            if platform == "hubspot"
            else self.settings.klaviyo_api_key
        )
        if secret is not None:
            return secret.value
        if self.token_store is not None and platform == self.platform and tokens is not None:
            return tokens.access_token(self.name)
        return None


@dataclass(frozen=True)
class Accounts:
    """Every account, with the environment's settings (connector-wide values)."""

    settings: Settings
    members: tuple[Account, ...] = ()
    source: Path | None = None
    hubspot_app_secrets: tuple[Secret, ...] = ()  # the public app's one client secret

    @classmethod
    def implicit(cls, settings: Settings) -> Accounts:
        """The accounts of the environment alone: `default`, if it names a platform or
        takes events without one (for the pull endpoint and the site snippet)."""
        account = Account(IMPLICIT, settings)
        used = account.platforms or settings.events_api_keys or settings.publishable_keys
        return cls(settings, (account,) if used or settings.pull_enabled else ())

    def __iter__(self) -> Iterator[Account]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def get(self, name: str) -> Account | None:
        return next((a for a in self.members if a.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.members)

    @property
    def oauth_app_secrets(self) -> tuple[Secret, ...]:
        """The public HubSpot app's client secrets (the first exchanges OAuth codes, all
        verify its webhooks): `[hubspot_app]`'s, else the environment's in OAuth mode;
        none without a public app (a private app's secret never stands in for it)."""
        if self.hubspot_app_secrets:
            return self.hubspot_app_secrets
        return self.settings.hubspot_client_secrets if self.settings.hubspot_oauth else ()


def load_accounts(environ: Mapping[str, str]) -> Accounts:
    """The environment's settings and every account; raises `SettingsError` (for the file,
    `ConfigError`) listing every problem."""
    settings = Settings.from_env(environ)
    if settings.config is None:
        return Accounts.implicit(settings)
    return read_accounts(settings.config, settings, environ)


def read_accounts(path: Path, settings: Settings, environ: Mapping[str, str]) -> Accounts:
    """The accounts of `path` (and the implicit one unless an entry is named `default`)."""
    problems = Problems(path)
    parsed = read_toml(path, problems)
    if parsed is None:
        raise ConfigError(path, problems.items)
    data, lines = parsed
    reader = _Reader(path, settings, environ, problems)
    for key in data:
        if key not in ("accounts", "hubspot_app"):
            problems.add(lines.top.get(key, 0), f"unknown key {key!r} (accounts, hubspot_app)")
    app_secrets = reader.hubspot_app(data.get("hubspot_app"), lines.tables.get("hubspot_app", {}))
    entries = data.get("accounts", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.add(lines.top.get("accounts", 0), "accounts: expected [[accounts]] tables")
        entries = []
    members = [
        account
        for index, entry in enumerate(entries)
        if (account := reader.entry(entry, *lines.entry(index, len(entries)), app_secrets))
    ]
    if IMPLICIT not in {a.name for a in members}:
        members = [*Accounts.implicit(settings), *members]
    _check_together(members, app_secrets, problems)
    app_line = lines.tables.get("hubspot_app", {}).get("client_secret", 0)
    _check_public_app(members, app_secrets, settings, problems, app_line)
    _check_klaviyo_app(members, settings, problems)
    if problems.items:
        raise ConfigError(path, problems.items)
    return Accounts(settings, tuple(members), path, app_secrets)


class _Reader:
    def __init__(
        self, path: Path, settings: Settings, environ: Mapping[str, str], problems: Problems
    ) -> None:
        self.path, self.settings, self.environ = path, settings, environ
        self.problems = problems
        self.names: set[str] = set()

    def hubspot_app(self, table: Any, lines: dict[str, int]) -> tuple[Secret, ...]:
        if table is None:
            return ()
        if not isinstance(table, dict):
            self.problems.add(0, "hubspot_app: expected a table")
            return ()
        for key in table:
            if key != "client_secret":
                self.problems.add(lines.get(key, 0), f"hubspot_app: unknown key {key!r}")
        if "client_secret" not in table:
            self.problems.add(0, "hubspot_app: client_secret is missing")
            return ()
        line = lines.get("client_secret", 0)
        return self.secrets(table["client_secret"], "client_secret", line, store_allowed=False)

    def entry(
        self,
        entry: dict[str, Any],
        header: int,
        lines: dict[str, int],
        app_secrets: tuple[Secret, ...],
    ) -> Account | None:
        count = len(self.problems.items)
        name = entry.get("name")
        label = f"account {name!r}" if isinstance(name, str) else "account"

        def fail(key: str, message: str) -> None:
            self.problems.add(lines.get(key, header), f"{label}: {message}")

        if not isinstance(name, str) or not NAME.match(name):
            fail("name", "name must be 1-40 lower case letters, digits, - or _ (starting with "
                         f"a letter or digit), got {name!r}")  # fmt: skip
        elif name in self.names:
            fail("name", "another account has this name")
        else:
            self.names.add(name)
        platform = entry.get("platform")
        if platform not in PLATFORMS:
            fail("platform", f"platform must be hubspot or klaviyo, got {platform!r}")
            return None
        known = (*COMMON_KEYS, *PLATFORM_KEYS[platform])
        for key in entry:
            if key not in known:
                fail(key, f"unknown key {key!r} for a {platform} account ({', '.join(known)})")
        base = self.settings if name == IMPLICIT else _without_credentials(self.settings)
        changes: dict[str, Any] = {}
        token_store: str | None = None
        for key, value in entry.items():
            field_name = _CREDENTIALS.get((key, platform)) or _CREDENTIALS.get((key, None))
            if field_name is None:
                self.setting(platform, key, value, changes, lambda m, k=key: fail(k, m))
                continue
            single = key in ("access_token", "api_key")
            ref = reference(value, key, store_allowed=single)
            if isinstance(ref, str):
                fail(key, ref)
            elif isinstance(ref, StoreRef):
                token_store = ref.store
                changes[field_name] = None
            else:
                secrets = self.env_secrets(ref, key, lambda m, k=key: fail(k, m))
                changes[field_name] = (secrets[0] if secrets else None) if single else secrets
        credential = "access_token" if platform == "hubspot" else "api_key"
        if credential not in entry and name != IMPLICIT:
            fail("platform", f"{credential} is missing: a {platform} account needs one to write")
        app = entry.get("app", PRIVATE)
        if platform == "klaviyo":
            self.klaviyo_app(app, entry, token_store, fail)
        if platform == "hubspot" and app == PUBLIC:
            if "account_id" not in entry:
                fail("app", "a public app install needs account_id (the portal id)")
            if "client_secret" in entry:
                fail("client_secret", "a public app install is verified by [hubspot_app] "
                                      "client_secret, not its own")  # fmt: skip
            if not app_secrets:
                fail("app", 'app = "public" needs [hubspot_app] client_secret in this file')
        if changes.get("publishable_keys") and not changes.get("allowed_origins"):
            fail("publishable_key", "allowed_origins is required with a publishable_key: the "
                                    "shop's origins that may send browser events")  # fmt: skip
        has_secret = changes.get("hubspot_client_secrets") or (
            platform == "hubspot" and app == PUBLIC and app_secrets
        )
        if has_secret and not base.public_url:
            fail("client_secret", "DCB_PUBLIC_URL is required: HubSpot signs the public URL "
                                  "it calls")  # fmt: skip
        if len(self.problems.items) > count or not isinstance(name, str):
            return None
        return Account(
            name,
            replace(base, **changes),
            origin=f"{self.path}:{header}",
            platform=platform,
            app=str(app),
            token_store=token_store,
        )

    @staticmethod
    def klaviyo_app(app: Any, entry: dict[str, Any], token_store: str | None, fail: Any) -> None:
        """A Klaviyo OAuth install: `app = "public"` with `api_key = { store = "oauth" }`
        and the installed account's id; a store reference means nothing else."""
        if app == PUBLIC and "api_key" in entry and token_store is None:
            fail("api_key", 'an app = "public" install writes with its stored OAuth tokens: '
                            'write api_key = { store = "oauth" }')  # fmt: skip
        if app == PUBLIC and "account_id" not in entry:
            fail("app", "an OAuth app install needs account_id (the Klaviyo account id)")
        if token_store is not None and app != PUBLIC:
            fail("api_key", 'api_key = { store = "oauth" } is an install of the Klaviyo OAuth '
                            'app: add app = "public"')  # fmt: skip

    def setting(
        self, platform: str, key: str, value: Any, changes: dict[str, Any], fail: Any
    ) -> None:
        """Convert one non-secret key into `changes` (a `Settings` field), or `fail`."""
        if key in ("name", "platform"):
            return
        if key == "account_id":
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                fail(f"account_id must be a string or a number, got {value!r}")
                return
            field_name = "hubspot_portal_id" if platform == "hubspot" else "klaviyo_account_id"
            changes[field_name] = str(value)
        elif key == "rules":
            path = (self.path.parent / value).expanduser() if isinstance(value, str) else None
            if path is None:
                fail(f"rules must be a path, got {value!r}")
            elif not path.exists():
                fail(f"rules: {path} does not exist")
            else:
                changes["rules"] = path
        elif key == "abandon_after":
            changes["abandon_after"] = self.duration(value, fail)
        elif key == "rate":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                fail(f"rate must be a whole number between 1 and 10000, got {value!r}")
            else:
                changes["hubspot_rate"] = value
        elif key == "api_url":
            parts = urlsplit(value) if isinstance(value, str) else None
            if parts is None or parts.scheme not in {"http", "https"} or not parts.netloc:
                fail(f"api_url must be an http(s) URL, got {value!r}")
            else:
                changes[f"{platform}_api_url"] = str(value).rstrip("/")
        elif key == "publishable_key":
            keys = [value] if isinstance(value, str) else value
            if not isinstance(keys, list) or not keys or not all(
                isinstance(k, str) and k.strip() for k in keys
            ):
                fail(f"publishable_key must be a key or a list of keys, got {value!r}")
            else:
                changes["publishable_keys"] = tuple(k.strip() for k in keys)
        elif key in ("allowed_origins", "shop_domains"):
            normal = normal_origin if key == "allowed_origins" else normal_domain
            items = value if isinstance(value, list) else None
            found = [normal(v) if isinstance(v, str) else None for v in items or []]
            if not items or None in found:
                what = "scheme://host[:port] origins" if normal is normal_origin else "host names"
                fail(f"{key} must be a list of {what}, got {value!r}")
            else:
                changes[key] = tuple(f for f in found if f is not None)
        elif key == "app" and value not in (PRIVATE, PUBLIC):
            fail(f'app must be "private" or "public", got {value!r}')

    @staticmethod
    def duration(value: Any, fail: Any) -> timedelta:
        try:
            return parse_duration(value if isinstance(value, str) else repr(value))
        except ValueError as exc:
            fail(f"abandon_after: {exc}")
            return timedelta(0)

    def secrets(
        self, value: Any, key: str, line: int, *, store_allowed: bool
    ) -> tuple[Secret, ...]:
        ref = reference(value, key, store_allowed=store_allowed)
        if isinstance(ref, str):
            self.problems.add(line, f"hubspot_app: {ref}")
            return ()
        assert isinstance(ref, EnvRef)
        return self.env_secrets(ref, key, lambda m: self.problems.add(line, f"hubspot_app: {m}"))

    def env_secrets(self, ref: Reference, key: str, fail: Any) -> tuple[Secret, ...]:
        """The secrets in the variable `ref` names (comma-separated), or `fail`."""
        assert isinstance(ref, EnvRef)
        raw = self.environ.get(ref.variable, "")
        found = tuple(Secret(p.strip()) for p in raw.split(",") if p.strip())
        if not found:
            fail(f"{key}: environment variable {ref.variable} is not set")
        return found


def _without_credentials(settings: Settings) -> Settings:
    """The environment's settings with none of the implicit account's own credentials."""
    defaults = Settings()
    own = {f.name: getattr(defaults, f.name) for f in fields(Settings) if f.name in _OWN}
    return replace(settings, **own)


def _check_together(
    members: list[Account], app_secrets: tuple[Secret, ...], problems: Problems
) -> None:
    """No two accounts on one platform account; no secret deciding for two accounts."""
    seen: dict[tuple[str, str], str] = {}
    for account in members:
        for platform in PLATFORMS:
            platform_id = account.account_id(platform)
            if platform_id is None or platform not in account.platforms:
                continue
            other = seen.setdefault((platform, platform_id), account.name)
            if other != account.name:
                problems.add(
                    _line(account),
                    f"accounts {other!r} and {account.name!r} are both {platform} account "
                    f"{platform_id}",
                )
    published: dict[str, str] = {}
    for account in members:
        for key in account.settings.publishable_keys:
            other = published.setdefault(key, account.name)
            if other != account.name:
                problems.add(
                    _line(account),
                    f"the same publishable key serves {other!r} and {account.name!r}: each "
                    "account needs its own (the key decides which account an event is for)",
                )
    for field_name, what in _DECIDING.items():
        owners: dict[str, str] = {
            s.value: "[hubspot_app]"
            for s in (app_secrets if field_name == "hubspot_client_secrets" else ())
        }
        for account in members:
            clashes = {
                other
                for secret in getattr(account.settings, field_name)
                if (other := owners.setdefault(secret.value, account.name)) != account.name
            }
            for other in sorted(clashes):
                problems.add(
                    _line(account),
                    f"the same {what} serves {other!r} and {account.name!r}: each account "
                    "needs its own (the secret decides which account a request is for)",
                )


def _check_public_app(
    members: list[Account],
    app_secrets: tuple[Secret, ...],
    settings: Settings,
    problems: Problems,
    line: int,
) -> None:
    """The public app's installs need its client id and a key for their tokens, and the
    app has one client secret: the file's or the environment's, not both."""
    public = [a for a in members if a.hubspot_app == PUBLIC]
    first = f"account {public[0].name!r}: " if public else ""
    if public and settings.hubspot_client_id is None:
        problems.add(_line(public[0]), f'{first}app = "public" needs DCB_HUBSPOT_CLIENT_ID (the '
                                       "public app's client id) in the environment")  # fmt: skip
    if public and not settings.secret_keys:
        problems.add(_line(public[0]), f'{first}app = "public" needs DCB_SECRET_KEY: installed '
                                       "portals' tokens are stored encrypted with it")  # fmt: skip
    if settings.hubspot_client_id and not (app_secrets or settings.hubspot_client_secrets):
        problems.add(line, "DCB_HUBSPOT_CLIENT_ID needs the app's client secret: [hubspot_app] "
                           "client_secret here, or DCB_HUBSPOT_CLIENT_SECRET")  # fmt: skip
    if app_secrets and settings.hubspot_oauth:
        problems.add(line, "[hubspot_app] client_secret and DCB_HUBSPOT_CLIENT_SECRET both "
                           "name the public app's: keep one (with [hubspot_app], each installed "
                           'portal is an app = "public" account)')  # fmt: skip


def _check_klaviyo_app(members: list[Account], settings: Settings, problems: Problems) -> None:
    """The Klaviyo OAuth app's installs need its credentials in the environment (and so,
    by `Settings`, a key for their tokens and the public URL)."""
    public = [a for a in members if a.platform == "klaviyo" and a.app == PUBLIC]
    if public and not (settings.klaviyo_client_id and settings.klaviyo_client_secret):
        problems.add(_line(public[0]), f"account {public[0].name!r}: app = \"public\" needs "
                     "DCB_KLAVIYO_CLIENT_ID and DCB_KLAVIYO_CLIENT_SECRET (the Klaviyo OAuth "
                     "app's) in the environment")  # fmt: skip


def _line(account: Account) -> int:
    _, _, line = account.origin.rpartition(":")
    return int(line) if line.isdigit() else 0
