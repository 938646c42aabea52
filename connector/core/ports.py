"""The roles outside systems play for the core, as small protocols.

Adapters implement them (`adapters/klaviyo`, `adapters/hubspot`, `adapters/storage`);
tests use in-memory fakes of the same protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from connector.core.events import ProfileRef


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """One profile's decided `dcb_*` properties, to be written to a platform.

    `key` is the connector's own name for the profile, echoed in the outcome so a caller
    can match outcomes to writes whatever order the platform answers in.
    """

    key: str
    profile: ProfileRef
    properties: Mapping[str, str]


class WriteStatus(StrEnum):
    """How one write ended: the only classes retry code looks at."""

    WRITTEN = "written"  # the platform holds the properties
    RETRY = "retry"  # try again later (429, 5xx, 423, 477, timeouts, connection errors)
    FATAL = "fatal"  # will fail again as sent (other 4xx): dead-letter it with the reason
    SKIPPED = "skipped"  # the profile no longer exists: nothing to do


ACCOUNT_SCOPE = "*"  # a pause scope covering every call to the account


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """How one write ended.

    A RETRY with `throttled` set is a rate-limit answer (429): waiting it out does not
    count as a failed attempt. `pause_scope` then names what the platform paused:
    `ACCOUNT_SCOPE` for the whole account (HubSpot) or one endpoint's name (Klaviyo).
    """

    key: str
    status: WriteStatus
    reason: str = ""
    retry_after: float | None = None  # seconds the platform asked us to wait, if it did
    platform_id: str | None = None  # the platform's id for the profile, when it told us
    throttled: bool = False  # a 429: the wait is the platform's, not a failure of ours
    pause_scope: str = ACCOUNT_SCOPE  # what a 429 paused (see above)

    def for_write(self, key: str, reason: str | None = None) -> WriteOutcome:
        """This outcome for the write `key` (a batch's answer applied to each of its
        writes), with another `reason` if given; the platform id is not carried over."""
        return replace(
            self, key=key, reason=self.reason if reason is None else reason, platform_id=None
        )


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What provisioning found and did; `problems` empty means the account is usable."""

    created: Sequence[str] = field(default_factory=tuple)
    existing: Sequence[str] = field(default_factory=tuple)
    problems: Sequence[str] = field(default_factory=tuple)


class PlatformClient(Protocol):
    """Writes decided properties into one platform account."""

    platform: str
    max_batch: int

    def write(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        """Write up to `max_batch` profiles; one outcome per write, never raises for a
        platform answer (transport and platform errors become RETRY/FATAL outcomes)."""
        ...

    def provision(self) -> ProvisionReport:
        """Make sure the account can take our properties (idempotent)."""
        ...


class FetchStatus(StrEnum):
    """How one profile read ended."""

    FOUND = "found"  # the platform answered with the profile
    RETRY = "retry"  # try again later (429, 5xx, timeouts, connection errors)
    FATAL = "fatal"  # will fail again as asked (other 4xx: a missing scope, say)
    SKIPPED = "skipped"  # the platform has no such profile


@dataclass(frozen=True, slots=True)
class FetchedProfile:
    """What a platform said about one profile's fields.

    `fields` holds, by context field name, the fields asked for that the platform has a
    value for (one it has no value for is absent). `updated_at` is the platform's time of
    its last change to the profile. A RETRY carries `retry_after` when the platform named a
    wait (a 429).
    """

    status: FetchStatus
    fields: Mapping[str, object] = field(default_factory=dict)
    updated_at: datetime | None = None
    reason: str = ""
    retry_after: float | None = None

    @classmethod
    def failed(cls, outcome: WriteOutcome) -> FetchedProfile:
        """The read's class from a classified platform answer (the write classes)."""
        status = {
            WriteStatus.RETRY: FetchStatus.RETRY,
            WriteStatus.SKIPPED: FetchStatus.SKIPPED,
        }.get(outcome.status, FetchStatus.FATAL)
        return cls(status, reason=outcome.reason, retry_after=outcome.retry_after)


class ProfileSource(Protocol):
    """Reads a profile's fields from one platform account (the write client's gate and
    pauses apply: a read counts against the same rate limits)."""

    platform: str

    def fetch(self, profile: ProfileRef, fields: Sequence[str]) -> FetchedProfile:
        """The platform's values of `fields` (context field names, see `profile_fields`)
        for `profile`; never raises for a platform answer. Does not wait out a pause: a
        paused account answers RETRY at once."""
        ...


class TokenSource(Protocol):
    """Where an account's platform credential lives when it is not in the environment:
    the encrypted token store that OAuth installs fill (`access_token = { store = "oauth" }`
    in `dcb.toml`)."""

    def access_token(self, account: str) -> str | None:
        """The account's current access token, or None when it holds none (not installed,
        or disconnected)."""
        ...

    def erase(self, account: str) -> bool:
        """Forget every token of the account; True when there was one."""
        ...


class PortalDirectory(Protocol):
    """Which account a HubSpot portal is, for the public app (one client secret for every
    portal): a request it signed belongs to the account of its `portalId`, if any."""

    def account_for(self, portal_id: str) -> str | None: ...
