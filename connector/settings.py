"""Settings: one object, read once from the environment (`DCB_*`) by the composition root.

Invalid settings stop start-up with one `SettingsError` listing every problem. Secrets are
held in `Secret`, whose text never shows in a repr, a log line or an error message.
Several values may be given comma-separated where rotation needs more than one at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from connector.core.durations import parse_duration
from connector.core.events import EventType

DEFAULT_KLAVIYO_API_URL = "https://a.klaviyo.com"
DEFAULT_HUBSPOT_API_URL = "https://api.hubapi.com"
#: HubSpot properties whose change means a commerce event, unless DCB_HUBSPOT_PROPERTY_EVENTS
#: says otherwise.
DEFAULT_PROPERTY_EVENTS = {"cart_value": "cart_updated", "last_order_date": "order_placed"}


class SettingsError(ValueError):
    """Some settings are invalid; the message lists every problem, one a line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value; shows as `***` everywhere but `.value`."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def _secrets(raw: str | None) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in (raw or "").split(",") if part.strip())


def normal_origin(raw: str) -> str | None:
    """An allowed origin, `scheme://host[:port]` in lower case, or None when `raw` is not
    one (a path, a query or user info make it something else)."""
    origin = raw.strip().rstrip("/")
    try:
        parts = urlsplit(origin)
        valid = parts.hostname is not None and (parts.port or 0) >= 0
    except ValueError:
        return None
    if not valid or parts.scheme not in {"http", "https"} or parts.path or parts.query:
        return None
    if parts.fragment or parts.username is not None:
        return None
    return origin.lower()


def normal_domain(raw: str) -> str | None:
    """A shop domain in lower case, or None when `raw` is not a host name."""
    domain = raw.strip().lower().rstrip(".")
    if "/" in domain or ":" in domain or ("." not in domain and domain != "localhost"):
        return None
    return domain


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".dcb")
    config: Path | None = None  # dcb.toml: the accounts (connector/accounts.py)
    rules: Path | None = None
    blocks_dir: Path | None = None
    public_url: str | None = None
    redis_url: str | None = None
    klaviyo_api_key: Secret | None = None
    klaviyo_api_url: str = DEFAULT_KLAVIYO_API_URL
    klaviyo_flow_tokens: tuple[Secret, ...] = ()
    klaviyo_webhook_secrets: tuple[Secret, ...] = ()
    klaviyo_account_id: str | None = None
    klaviyo_client_id: str | None = None  # the Klaviyo OAuth app's
    klaviyo_client_secret: Secret | None = None
    klaviyo_scopes: tuple[str, ...] = ()  # empty: the manifest's scopes
    hubspot_access_token: Secret | None = None
    hubspot_api_url: str = DEFAULT_HUBSPOT_API_URL
    hubspot_client_secrets: tuple[Secret, ...] = ()
    hubspot_client_id: str | None = None
    hubspot_scopes: tuple[str, ...] = ()  # empty: the manifest's scopes
    secret_keys: tuple[Secret, ...] = ()
    hubspot_app_id: str | None = None
    hubspot_portal_id: str | None = None
    hubspot_rate: int = 100
    hubspot_allow_legacy_signatures: bool = False
    hubspot_property_events: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_PROPERTY_EVENTS)
    )
    events_api_keys: tuple[Secret, ...] = ()
    publishable_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    shop_domains: tuple[str, ...] = ()
    identity_secrets: tuple[Secret, ...] = ()
    browser_rate_per_key: int = 6000
    browser_rate_per_address: int = 600
    browser_rate_per_browser: int = 60
    behind_proxy: bool = False
    pull_api_keys: tuple[Secret, ...] = ()
    url_signing_keys: tuple[Secret, ...] = ()
    pull_max_age: timedelta = timedelta(seconds=60)
    pull_cache_ttl: timedelta = timedelta(minutes=5)
    pull_cache_size: int = 10_000
    pull_budget_ms: int = 250
    abandon_after: timedelta = timedelta(minutes=30)
    flush_ms: int = 50
    fetch_budget_ms: int = 80
    fetch_ttl: timedelta = timedelta(minutes=10)
    queue_limit: int = 100_000
    log_level: str = "INFO"

    @property
    def klaviyo_oauth(self) -> bool:
        """The Klaviyo OAuth app's install is on (and a private API key does not override
        it): Klaviyo writes use the installed account's stored tokens."""
        return (
            self.klaviyo_api_key is None
            and self.klaviyo_client_id is not None
            and self.klaviyo_client_secret is not None
        )

    @property
    def klaviyo_enabled(self) -> bool:
        return self.klaviyo_api_key is not None or self.klaviyo_oauth

    @property
    def klaviyo_redirect_uri(self) -> str | None:
        """Where Klaviyo sends the browser back after an install."""
        return f"{self.public_url}/oauth/klaviyo/callback" if self.public_url else None

    @property
    def hubspot_oauth(self) -> bool:
        """The public app's OAuth install is on (and a private app's token does not
        override it): HubSpot writes use the installed portal's stored tokens."""
        return (
            self.hubspot_access_token is None
            and self.hubspot_client_id is not None
            and bool(self.hubspot_client_secrets)
        )

    @property
    def hubspot_enabled(self) -> bool:
        return self.hubspot_access_token is not None or self.hubspot_oauth

    @property
    def hubspot_redirect_uri(self) -> str | None:
        """Where HubSpot sends the browser back after an install."""
        return f"{self.public_url}/oauth/hubspot/callback" if self.public_url else None

    @property
    def pull_enabled(self) -> bool:
        """Whether `GET /v1/blocks/...` answers: it needs an API key or a signing key."""
        return bool(self.pull_api_keys or self.url_signing_keys)

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms this account writes to, in a fixed order."""
        return tuple(
            name
            for name, on in (("hubspot", self.hubspot_enabled), ("klaviyo", self.klaviyo_enabled))
            if on
        )

    @property
    def site_enabled(self) -> bool:
        """The site snippet's browser path is on (a publishable key and allowed origins)."""
        return bool(self.publishable_keys and self.allowed_origins)

    @property
    def url_domains(self) -> tuple[str, ...]:
        """The domains URLs from browsers may point to: `DCB_SHOP_DOMAINS`, else the
        allowed origins' hosts."""
        if self.shop_domains:
            return self.shop_domains
        return tuple(sorted({urlsplit(o).hostname or "" for o in self.allowed_origins} - {""}))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read `DCB_*` variables; raises `SettingsError` listing every problem."""
        return _Reader(environ).settings()


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = {k: v for k, v in environ.items() if k.startswith("DCB_") and v != ""}
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value is not None else None

    def number(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, got {raw!r}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, got {value}")
        return value

    def flag(self, name: str) -> bool:
        raw = (self.text(name) or "false").lower()
        if raw not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
            self.problems.append(f"{name} must be true or false, got {raw!r}")
        return raw in {"1", "true", "yes", "on"}

    def url(self, name: str, default: str | None) -> str | None:
        raw = self.text(name)
        if raw is None:
            return default
        parts = urlsplit(raw)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            self.problems.append(f"{name} must be an http(s) URL, got {raw!r}")
        return raw.rstrip("/")

    def duration(self, name: str, default: timedelta) -> timedelta:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.problems.append(f"{name}: {exc}")
            return default

    def redis_url(self) -> str | None:
        raw = self.text("DCB_REDIS_URL")
        if raw is not None and urlsplit(raw).scheme not in {"redis", "rediss", "unix"}:
            self.problems.append("DCB_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return raw

    def path(self, name: str, must_exist: bool) -> Path | None:
        raw = self.text(name)
        if raw is None:
            return None
        path = Path(raw).expanduser()
        if must_exist and not path.exists():
            self.problems.append(f"{name}: {raw} does not exist")
        return path

    def secret_keys(self) -> tuple[Secret, ...]:
        """`DCB_SECRET_KEY`: Fernet keys, the first encrypts, every one decrypts."""
        keys = _secrets(self.text("DCB_SECRET_KEY"))
        for n, key in enumerate(keys, start=1):
            try:
                Fernet(key.value.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                self.problems.append(
                    f"DCB_SECRET_KEY: key {n} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes, 44 characters)"
                )
        return keys

    def words(self, name: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in (self.text(name) or "").split(",") if p.strip())

    def origins(self) -> tuple[str, ...]:
        """`DCB_ALLOWED_ORIGINS`: exact origins, `scheme://host[:port]`."""
        origins = []
        for raw in self.words("DCB_ALLOWED_ORIGINS"):
            origin = normal_origin(raw)
            if origin is None:
                self.problems.append(
                    f"DCB_ALLOWED_ORIGINS: expected scheme://host[:port], got {raw!r}"
                )
                continue
            origins.append(origin)
        return tuple(origins)

    def domains(self) -> tuple[str, ...]:
        """`DCB_SHOP_DOMAINS`: host names (a subdomain of one is accepted too)."""
        domains = []
        for raw in self.words("DCB_SHOP_DOMAINS"):
            domain = normal_domain(raw)
            if domain is None:
                self.problems.append(f"DCB_SHOP_DOMAINS: expected a host name, got {raw!r}")
                continue
            domains.append(domain)
        return tuple(domains)

    def property_events(self) -> dict[str, str]:
        raw = self.text("DCB_HUBSPOT_PROPERTY_EVENTS")
        if raw is None:
            return dict(DEFAULT_PROPERTY_EVENTS)
        mapping: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in raw.split(","))):
            prop, sep, kind = pair.partition("=")
            if not sep or not prop.strip() or not kind.strip():
                self.problems.append(
                    f"DCB_HUBSPOT_PROPERTY_EVENTS: expected property=event_type, got {pair!r}"
                )
                continue
            if kind.strip() not in {t.value for t in EventType}:
                self.problems.append(f"DCB_HUBSPOT_PROPERTY_EVENTS: {pair!r}: unknown event type")
                continue
            mapping[prop.strip()] = kind.strip()
        return mapping

    def settings(self) -> Settings:
        token = self.text("DCB_HUBSPOT_ACCESS_TOKEN")
        key = self.text("DCB_KLAVIYO_API_KEY")
        klaviyo_secret = self.text("DCB_KLAVIYO_CLIENT_SECRET")
        settings = Settings(
            data_dir=self.path("DCB_DATA_DIR", must_exist=False) or Path(".dcb"),
            config=self.path("DCB_CONFIG", must_exist=True),
            rules=self.path("DCB_RULES", must_exist=True),
            blocks_dir=self.path("DCB_BLOCKS_DIR", must_exist=True),
            public_url=self.url("DCB_PUBLIC_URL", None),
            redis_url=self.redis_url(),
            klaviyo_api_key=Secret(key) if key else None,
            klaviyo_api_url=self.url("DCB_KLAVIYO_API_URL", DEFAULT_KLAVIYO_API_URL)
            or DEFAULT_KLAVIYO_API_URL,
            klaviyo_flow_tokens=_secrets(self.text("DCB_KLAVIYO_FLOW_TOKEN")),
            klaviyo_webhook_secrets=_secrets(self.text("DCB_KLAVIYO_WEBHOOK_SECRET")),
            klaviyo_account_id=self.text("DCB_KLAVIYO_ACCOUNT_ID"),
            klaviyo_client_id=self.text("DCB_KLAVIYO_CLIENT_ID"),
            klaviyo_client_secret=Secret(klaviyo_secret) if klaviyo_secret else None,
            klaviyo_scopes=tuple((self.text("DCB_KLAVIYO_SCOPES") or "").split()),
            hubspot_access_token=Secret(token) if token else None,
            hubspot_api_url=self.url("DCB_HUBSPOT_API_URL", DEFAULT_HUBSPOT_API_URL)
            or DEFAULT_HUBSPOT_API_URL,
            hubspot_client_secrets=_secrets(self.text("DCB_HUBSPOT_CLIENT_SECRET")),
            hubspot_client_id=self.text("DCB_HUBSPOT_CLIENT_ID"),
            hubspot_scopes=tuple((self.text("DCB_HUBSPOT_SCOPES") or "").split()),
            secret_keys=self.secret_keys(),
            hubspot_app_id=self.text("DCB_HUBSPOT_APP_ID"),
            hubspot_portal_id=self.text("DCB_HUBSPOT_PORTAL_ID"),
            hubspot_rate=self.number("DCB_HUBSPOT_RATE", 100, 1, 10_000),
            hubspot_allow_legacy_signatures=self.flag("DCB_HUBSPOT_ALLOW_LEGACY_SIGNATURES"),
            hubspot_property_events=self.property_events(),
            events_api_keys=_secrets(self.text("DCB_EVENTS_API_KEY")),
            publishable_keys=self.words("DCB_PUBLISHABLE_KEY"),
            allowed_origins=self.origins(),
            shop_domains=self.domains(),
            identity_secrets=_secrets(self.text("DCB_IDENTITY_SECRET")),
            browser_rate_per_key=self.number("DCB_BROWSER_RATE_PER_KEY", 6000, 1, 10_000_000),
            browser_rate_per_address=self.number("DCB_BROWSER_RATE_PER_ADDRESS", 600, 1, 1_000_000),
            browser_rate_per_browser=self.number("DCB_BROWSER_RATE_PER_BROWSER", 60, 1, 100_000),
            behind_proxy=self.flag("DCB_BEHIND_PROXY"),
            pull_api_keys=_secrets(self.text("DCB_PULL_API_KEYS")),
            url_signing_keys=_secrets(self.text("DCB_URL_SIGNING_KEY")),
            pull_max_age=self.duration("DCB_PULL_MAX_AGE", timedelta(seconds=60)),
            pull_cache_ttl=self.duration("DCB_PULL_CACHE_TTL", timedelta(minutes=5)),
            pull_cache_size=self.number("DCB_PULL_CACHE_SIZE", 10_000, 1, 10_000_000),
            pull_budget_ms=self.number("DCB_PULL_BUDGET_MS", 250, 1, 60_000),
            abandon_after=self.duration("DCB_ABANDON_AFTER", timedelta(minutes=30)),
            flush_ms=self.number("DCB_FLUSH_MS", 50, 0, 60_000),
            fetch_budget_ms=self.number("DCB_FETCH_BUDGET_MS", 80, 0, 10_000),
            fetch_ttl=self.duration("DCB_FETCH_TTL", timedelta(minutes=10)),
            queue_limit=self.number("DCB_QUEUE_LIMIT", 100_000, 1, 100_000_000),
            log_level=(self.text("DCB_LOG_LEVEL") or "INFO").upper(),
        )
        if settings.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            self.problems.append("DCB_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if settings.hubspot_client_secrets and not settings.public_url:
            self.problems.append(
                "DCB_PUBLIC_URL is required with DCB_HUBSPOT_CLIENT_SECRET: HubSpot signs the "
                "public URL it calls"
            )
        if settings.hubspot_oauth and not settings.secret_keys:
            self.problems.append(
                "DCB_SECRET_KEY is required with DCB_HUBSPOT_CLIENT_ID: installed portals' "
                "tokens are stored encrypted with it (make one with: python -c \"from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\")"
            )
        if (
            settings.hubspot_client_id
            and not settings.hubspot_client_secrets
            and not settings.config
        ):
            self.problems.append(  # with DCB_CONFIG, dcb.toml's [hubspot_app] may give it
                "DCB_HUBSPOT_CLIENT_SECRET is required with DCB_HUBSPOT_CLIENT_ID (the public "
                "app's client secret)"
            )

        self.check_klaviyo_app(settings)
        self.check_site(settings)
        self.check_pull(settings)
        if self.problems:
            raise SettingsError(self.problems)
        return settings

    def check_klaviyo_app(self, settings: Settings) -> None:
        """The Klaviyo OAuth app needs both its credentials, a key for the tokens it stores
        and the public URL Klaviyo sends browsers back to."""
        if (settings.klaviyo_client_id is None) != (settings.klaviyo_client_secret is None):
            self.problems.append(
                "DCB_KLAVIYO_CLIENT_ID and DCB_KLAVIYO_CLIENT_SECRET go together (the Klaviyo "
                "OAuth app's client id and secret)"
            )
        if settings.klaviyo_client_id is None or settings.klaviyo_client_secret is None:
            return
        if not settings.secret_keys:
            self.problems.append(
                "DCB_SECRET_KEY is required with DCB_KLAVIYO_CLIENT_ID: installed Klaviyo "
                "accounts' tokens are stored encrypted with it"
            )
        if not settings.public_url:
            self.problems.append(
                "DCB_PUBLIC_URL is required with DCB_KLAVIYO_CLIENT_ID: Klaviyo sends the "
                "browser back to DCB_PUBLIC_URL/oauth/klaviyo/callback"
            )

    def check_site(self, settings: Settings) -> None:
        if settings.publishable_keys and not settings.allowed_origins:
            self.problems.append(
                "DCB_ALLOWED_ORIGINS is required with DCB_PUBLISHABLE_KEY: the shop's origins "
                "(e.g. https://shop.example) that may send browser events"
            )
        server_keys = {k.value for k in settings.events_api_keys}
        if server_keys & set(settings.publishable_keys):
            self.problems.append(
                "DCB_PUBLISHABLE_KEY must differ from every DCB_EVENTS_API_KEY: it is public"
            )

    def check_pull(self, settings: Settings) -> None:
        shared = {k.value for k in settings.pull_api_keys} & {
            k.value for k in settings.events_api_keys
        }
        if shared:
            self.problems.append(
                "DCB_PULL_API_KEYS must differ from DCB_EVENTS_API_KEY: a key that sends "
                "events must not read decisions"
            )
        if {k.value for k in settings.pull_api_keys} & set(settings.publishable_keys):
            self.problems.append(
                "DCB_PULL_API_KEYS must differ from DCB_PUBLISHABLE_KEY: the publishable key is "
                "public and must not read decisions"
            )
        if settings.pull_cache_ttl <= timedelta(0):
            self.problems.append("DCB_PULL_CACHE_TTL must be longer than 0s")
        if settings.pull_max_age > timedelta(days=365):
            self.problems.append("DCB_PULL_MAX_AGE must be at most 365d")
