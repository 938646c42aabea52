"""`InMemoryPlatformClient`: the `PlatformClient` port with a platform's behaviour, no HTTP.

Behaves as both real clients do for the identifiers they share: an email upserts (an
unknown one creates the profile), a platform id that matches nothing is SKIPPED, a
property that is not a `dcb_*` property is FATAL. Scripted faults (`throttle`, `fail`)
answer the next calls; like a platform, it answers 429 again to any call made while a
pause it announced is pending, and counts those calls in `calls_during_pause`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from connector.core.ports import (
    ACCOUNT_SCOPE,
    ProfileWrite,
    ProvisionReport,
    WriteOutcome,
    WriteStatus,
)
from connector.core.properties_schema import PROPERTY_NAMES


@dataclass
class Fault:
    kind: str  # "throttle" or "fail"
    retry_after: float = 1.0
    keys: frozenset[str] | None = None  # None: the whole call


@dataclass
class StoredProfile:
    platform_id: str
    email: str | None
    properties: dict[str, str] = field(default_factory=dict)
    writes: int = 0


class InMemoryPlatformClient:
    platform = "memory"

    def __init__(self, clock: Callable[[], float], *, max_batch: int = 100) -> None:
        self.max_batch = max_batch
        self.profiles: dict[str, StoredProfile] = {}
        self.calls: list[tuple[float, tuple[str, ...]]] = []
        self.calls_during_pause = 0
        self._clock = clock
        self._faults: deque[Fault] = deque()
        self._quiet_until = 0.0

    def add_profile(self, email: str | None = None) -> str:
        platform_id = str(1000 + len(self.profiles))
        self.profiles[platform_id] = StoredProfile(platform_id, email)
        return platform_id

    def script(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def provision(self) -> ProvisionReport:
        return ProvisionReport(existing=PROPERTY_NAMES)

    def write(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        if len(writes) > self.max_batch:
            raise ValueError(f"writes: at most {self.max_batch} per call")
        now = self._clock()
        self.calls.append((now, tuple(w.key for w in writes)))
        if now < self._quiet_until:
            self.calls_during_pause += 1
            return [self._throttled(w, self._quiet_until - now) for w in writes]
        fault = self._faults.popleft() if self._faults else None
        return [self._answer(w, fault, now) for w in writes]

    def _answer(self, write: ProfileWrite, fault: Fault | None, now: float) -> WriteOutcome:
        if fault is not None and (fault.keys is None or write.key in fault.keys):
            if fault.kind == "throttle":
                self._quiet_until = max(self._quiet_until, now + fault.retry_after)
                return self._throttled(write, fault.retry_after)
            return WriteOutcome(write.key, WriteStatus.RETRY, "503 service unavailable")
        return self._apply(write)

    def _throttled(self, write: ProfileWrite, wait: float) -> WriteOutcome:
        return WriteOutcome(
            write.key, WriteStatus.RETRY, "429 rate limited", retry_after=wait,
            throttled=True, pause_scope=ACCOUNT_SCOPE,
        )

    def _apply(self, write: ProfileWrite) -> WriteOutcome:
        unknown = sorted(set(write.properties) - set(PROPERTY_NAMES))
        if unknown:
            reason = f"400 property {unknown[0]!r} does not exist"
            return WriteOutcome(write.key, WriteStatus.FATAL, reason)
        ref = write.profile
        if ref.email is None and ref.hubspot_id is None and ref.klaviyo_id is None:
            return WriteOutcome(write.key, WriteStatus.FATAL, "no identifier to write by")
        if ref.email is not None and "@" not in ref.email:
            return WriteOutcome(write.key, WriteStatus.FATAL, "400 invalid email address")
        profile = self._find(write)
        if profile is None:
            return WriteOutcome(write.key, WriteStatus.SKIPPED, "404 profile no longer exists")
        profile.properties.update(write.properties)
        profile.writes += 1
        return WriteOutcome(write.key, WriteStatus.WRITTEN, platform_id=profile.platform_id)

    def _find(self, write: ProfileWrite) -> StoredProfile | None:
        ref = write.profile
        platform_id = ref.hubspot_id or ref.klaviyo_id
        if platform_id is not None:
            return self.profiles.get(platform_id)
        for profile in self.profiles.values():
            if profile.email == ref.email:
                return profile
        return self.profiles.setdefault(
            created := str(1000 + len(self.profiles)), StoredProfile(created, ref.email)
        )
