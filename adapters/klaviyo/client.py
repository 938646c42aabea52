"""`KlaviyoClient`: the `PlatformClient` port over the official `klaviyo-api` SDK.

`fetch` (the `ProfileSource` port) reads one profile's fields (`Profiles.get_profile`, or
`get_profiles` filtered by email or external id), on the same gate as the writes.

Small batches are upserted one profile per call through `profile-import`
(`Profiles.create_or_update_profile`), by Klaviyo id, else email (an unknown email creates
the profile), else external id. Batches of `bulk_threshold` profiles or more go through a
bulk profile import job (`Profiles.bulk_import_profiles`, then polling the job): one call
instead of one per profile. A job that reports failed profiles or is cancelled is redone
profile by profile, so every write still gets its own outcome.

The credential is a private API key (a string: the SDK's configuration holds it) or, for an
account installed through the OAuth app, a `TokenProvider` asked before every call: the
SDK's configuration then holds no credential and each call carries the current token as
its own `Authorization: Bearer` header (`_headers`), so one SDK client serves every token
and thread. After a 401 the provider is asked for a refreshed token and the call is made
once more. With no usable token (the account disconnected, say) every write comes back
RETRY, throttled: the account pauses and its writes wait, nothing is dead-lettered.

The SDK's own retries are off (`max_retries=1` is one attempt in total, urllib3 retries 0),
every call has a timeout, and every call passes the injected `CallGate` first. After a
429 the rest of the batch is not sent: it comes back throttled for the `Deliverer`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import urllib3
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException
from openapi_client.rest import RESTClientObject

from adapters.klaviyo.errors import classify
from connector.core.adaptive import AdaptiveRate
from connector.core.events import ProfileRef, format_time, parse_time
from connector.core.late_data import FETCH_TIMEOUT
from connector.core.pauses import PauseBook
from connector.core.ports import (
    ACCOUNT_SCOPE,
    FetchedProfile,
    FetchStatus,
    ProfileWrite,
    ProvisionReport,
    WriteOutcome,
    WriteStatus,
)
from connector.core.profile_fields import klaviyo_attribute
from connector.core.ratelimit import FixedWindowLimiter, LimiterByKey, RateLimiter
from connector.core.redaction import scrub
from connector.core.throttle import CallGate, Throttle
from connector.core.tokens import TokenProvider, TokenUnavailable, with_fresh_token

PROFILE_IMPORT = "profile-import"
BULK_IMPORT = "profile-bulk-import-jobs"
PROFILES = "profiles"
# Documented limits (burst per second, steady per minute), per account.
RATE_LIMITS: dict[str, tuple[int, int]] = {
    PROFILE_IMPORT: (75, 700),
    BULK_IMPORT: (10, 150),
    PROFILES: (75, 700),
}
MAX_PROFILE_BYTES = 100_000  # profile-import payload limit
MAX_JOB_PROFILES = 10_000  # bulk import job limit
MAX_JOB_BYTES = 4_500_000  # under the 5 MB job payload limit, leaving room for the envelope
# Measured with bench/push.py: a job costs 3 calls (submit, 2 polls) against the bulk
# limit (150/min), an upsert 1 call per profile against 700/min; the job's ceiling passes
# the upserts' from 15 profiles a batch. 25 leaves margin for real jobs, which take seconds.
BULK_THRESHOLD = 25

Sleep = Callable[[float], None]
T = TypeVar("T")
#: A call to the SDK given the headers to send with it (None: the configuration's key).
Call = Callable[[dict[str, str] | None], T]


WindowsLimiter = Callable[[Sequence[tuple[int, float]]], RateLimiter]


def klaviyo_throttle(
    pauses: PauseBook,
    sleep: Sleep,
    clock: Callable[[], float],
    scale: float = 1.0,
    windows_limiter: WindowsLimiter | None = None,
) -> Throttle:
    """The gate for one Klaviyo account at `scale` times the documented limits: fixed
    per-second and per-minute windows per endpoint, kept in this process unless
    `windows_limiter` builds shared ones (in Redis) from the same windows."""
    scaled = {
        k: (max(1, round(s * scale)), max(1, round(m * scale))) for k, (s, m) in RATE_LIMITS.items()
    }
    build = windows_limiter or (lambda windows: FixedWindowLimiter(windows, clock))
    limiter = LimiterByKey({k: build([(s, 1.0), (m, 60.0)]) for k, (s, m) in scaled.items()})
    rates = {k: AdaptiveRate(m / 60.0, clock) for k, (_, m) in scaled.items()}
    return Throttle(limiter, pauses, rates, sleep)


class KlaviyoClient:
    platform = "klaviyo"

    def __init__(
        self,
        api_key: str | TokenProvider,
        *,
        base_url: str,
        gate: CallGate,
        sleep: Sleep,
        timeout: float = 10.0,
        max_batch: int = 1000,
        bulk_threshold: int = BULK_THRESHOLD,
        poll_interval: float = 1.0,
        max_polls: int = 60,
    ) -> None:
        fixed = api_key if isinstance(api_key, str) else None
        self._provider = None if isinstance(api_key, str) else api_key
        api = KlaviyoAPI(
            fixed,
            access_token=None if fixed is not None else "",
            max_retries=1,
            test_host=base_url.rstrip("/"),
        )
        if fixed is None:  # no credential in the configuration: each call brings its token
            api.api_client.configuration.access_token = None
        api.api_client.configuration.retries = urllib3.Retry(0, redirect=False)
        api.api_client.rest_client = RESTClientObject(api.api_client.configuration)
        self._profiles = api.Profiles  # each access builds a new API object: keep one
        self._gate = gate
        self._sleep = sleep
        self._timeout = timeout
        self.max_batch = max_batch
        self._bulk_threshold = max(2, bulk_threshold)
        self._poll_interval = poll_interval
        self._max_polls = max_polls

    def write(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        """One outcome per write, in order; never raises for a platform answer."""
        usable = [w for w in writes if _identified(w)]
        sent = (
            self._write_in_jobs(usable)
            if len(usable) >= self._bulk_threshold
            else (self._write_each(usable))
        )
        by_key = {o.key: o for o in sent}
        unusable = "no Klaviyo id, email or external id to write by"
        return [
            by_key.get(w.key) or WriteOutcome(w.key, WriteStatus.FATAL, unusable) for w in writes
        ]

    def provision(self) -> ProvisionReport:
        """Proves the key works with the cheapest read (one profile, one call)."""
        what = "key" if self._provider is None else "OAuth token"
        try:
            self._authorized(
                PROFILES,
                lambda headers: self._profiles.get_profiles(
                    page_size=1, _request_timeout=self._timeout, _headers=headers
                ),
            )
        except TokenUnavailable as exc:
            return ProvisionReport(problems=(f"no access token: {exc.reason}",))
        except Exception as exc:
            reason = classify(exc, PROFILES).reason
            return ProvisionReport(problems=(f"Klaviyo did not accept the {what}: {reason}",))
        self._gate.succeeded(PROFILES)
        held = "api key" if self._provider is None else "OAuth token"
        return ProvisionReport(existing=(f"{held} (profiles:read)",))

    def fetch(self, profile: ProfileRef, fields: Sequence[str]) -> FetchedProfile:
        """Read `fields` (context names, mapped by `profile_fields`) of one profile: by
        Klaviyo id with `Profiles.get_profile`, else by email or external id with
        `Profiles.get_profiles` and an `equals` filter; never raises for a platform answer.
        A paused endpoint answers RETRY without a call."""
        paused = self._gate.paused_for(PROFILES)
        if paused > 0:
            return FetchedProfile(FetchStatus.RETRY, reason="profiles paused", retry_after=paused)
        if not (profile.klaviyo_id or profile.email or profile.external_id):
            return FetchedProfile(FetchStatus.FATAL, reason="no Klaviyo id, email or external id")
        timeout = min(self._timeout, FETCH_TIMEOUT)
        try:
            resources = self._authorized(
                PROFILES, lambda headers: self._read(profile, timeout, headers)
            )
        except TokenUnavailable as exc:
            reason = scrub(f"no access token: {exc.reason}")
            return FetchedProfile(FetchStatus.RETRY, reason=reason, retry_after=exc.retry_after)
        except Exception as exc:
            verdict = classify(exc, PROFILES)
            if verdict.throttled:
                self._gate.throttled(PROFILES, PROFILES, verdict.retry_after or 1.0, verdict.reason)
            return FetchedProfile.failed(verdict)
        self._gate.succeeded(PROFILES)
        if not resources:
            return FetchedProfile(FetchStatus.SKIPPED, reason="no such profile")
        attributes = resources[0].attributes.to_dict()
        values = {f: v for f in fields if (v := _at(attributes, klaviyo_attribute(f))) is not None}
        updated = attributes.get("updated")
        stamp = parse_time(updated, "updated") if isinstance(updated, str) else updated
        return FetchedProfile(FetchStatus.FOUND, values, updated_at=stamp)

    def _read(
        self, profile: ProfileRef, timeout: float, headers: dict[str, str] | None
    ) -> list[Any]:
        """The profile resources found (none, or one)."""
        if profile.klaviyo_id:
            found = self._profiles.get_profile(
                profile.klaviyo_id, _request_timeout=timeout, _headers=headers
            )
            return [found.data]
        kind, value = (
            ("email", profile.email) if profile.email else ("external_id", profile.external_id)
        )
        page = self._profiles.get_profiles(
            filter=f"equals({kind},{_quoted(value or '')})",
            page_size=1,
            _request_timeout=timeout,
            _headers=headers,
        )
        return list(page.data or [])

    # -- one profile per call ---------------------------------------------------------
    def _write_each(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        stop: WriteOutcome | None = None
        for write in writes:
            if stop is not None:
                outcomes.append(stop.for_write(write.key, "not sent: " + stop.reason))
                continue
            outcome = self._upsert(write)
            if outcome.throttled:
                stop = outcome
            outcomes.append(outcome)
        return outcomes

    def _upsert(self, write: ProfileWrite) -> WriteOutcome:
        body = {"data": _resource(write)}
        if len(json.dumps(body)) > MAX_PROFILE_BYTES:
            return WriteOutcome(write.key, WriteStatus.FATAL, "profile payload over 100 KB")
        try:
            answer = self._authorized(
                PROFILE_IMPORT,
                lambda headers: self._profiles.create_or_update_profile(
                    body, _request_timeout=self._timeout, _headers=headers
                ),
            )
        except TokenUnavailable as exc:
            return self._unavailable(exc, PROFILE_IMPORT).for_write(write.key)
        except Exception as exc:
            return self._failed(exc, PROFILE_IMPORT, write.key)
        self._gate.succeeded(PROFILE_IMPORT)
        return WriteOutcome(write.key, WriteStatus.WRITTEN, platform_id=answer.data.id)

    # -- bulk import jobs -------------------------------------------------------------
    def _write_in_jobs(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome] = []
        stop: WriteOutcome | None = None
        for job in _jobs(writes):
            if stop is not None:
                outcomes.extend(stop.for_write(w.key, "not sent: " + stop.reason) for w in job)
                continue
            done = self._run_job(job)
            stop = next((o for o in done if o.throttled), None)
            outcomes.extend(done)
        return outcomes

    def _run_job(self, job: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": [_resource(w) for w in job]}},
            }
        }
        try:
            created = self._authorized(
                BULK_IMPORT,
                lambda headers: self._profiles.bulk_import_profiles(
                    body, _request_timeout=self._timeout, _headers=headers
                ),
            )
        except TokenUnavailable as exc:
            unavailable = self._unavailable(exc, BULK_IMPORT)
            return [unavailable.for_write(w.key) for w in job]
        except Exception as exc:
            verdict = classify(exc, BULK_IMPORT)
            if verdict.throttled:
                self._gate.throttled(
                    BULK_IMPORT, BULK_IMPORT, verdict.retry_after or 1.0, verdict.reason
                )
            return [verdict.for_write(w.key) for w in job]
        self._gate.succeeded(BULK_IMPORT)
        return self._await_job(created.data.id, job)

    def _await_job(self, job_id: str, job: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        for _ in range(self._max_polls):
            self._sleep(self._poll_interval)
            try:
                answer = self._authorized(
                    BULK_IMPORT,
                    lambda headers: self._profiles.get_bulk_import_profiles_job(
                        job_id, _request_timeout=self._timeout, _headers=headers
                    ),
                )
            except TokenUnavailable as exc:
                unavailable = self._unavailable(exc, BULK_IMPORT)
                return [unavailable.for_write(w.key, "bulk job status unknown") for w in job]
            except Exception as exc:
                verdict = classify(exc, BULK_IMPORT)
                if not verdict.throttled:
                    return [
                        verdict.for_write(w.key, "bulk job status unknown: " + verdict.reason)
                        for w in job
                    ]
                self._gate.throttled(BULK_IMPORT, BULK_IMPORT, verdict.retry_after or 1.0)
                continue
            self._gate.succeeded(BULK_IMPORT)
            state = answer.data.attributes
            if state.status == "complete" and not state.failed_count:
                return [WriteOutcome(w.key, WriteStatus.WRITTEN) for w in job]
            if state.status in ("complete", "cancelled"):
                return self._write_each(job)  # which ones failed: ask profile by profile
        reason = f"bulk job still processing after {self._max_polls} polls"
        return [WriteOutcome(w.key, WriteStatus.RETRY, reason) for w in job]

    # -- access tokens ----------------------------------------------------------------
    def _authorized(self, endpoint: str, call: Call[T]) -> T:
        """`call(headers)` after the gate, with the current token; once more with a
        refreshed token after a 401. Raises what the call raises, or `TokenUnavailable`."""
        if self._provider is None:
            self._gate.wait_turn(endpoint)
            return call(None)
        return with_fresh_token(
            self._provider,
            lambda: self._gate.wait_turn(endpoint),
            lambda token: call(_bearer(token)),
            lambda exc: isinstance(exc, ApiException) and exc.status == 401,
        )

    def _unavailable(self, exc: TokenUnavailable, endpoint: str) -> WriteOutcome:
        """No token to write with: pause the account; the writes wait, none is lost."""
        reason = scrub(f"no access token: {exc.reason}")
        self._gate.throttled(endpoint, ACCOUNT_SCOPE, exc.retry_after, reason)
        return WriteOutcome(
            "", WriteStatus.RETRY, reason, retry_after=exc.retry_after, throttled=True
        )

    def _failed(self, exc: Exception, endpoint: str, key: str) -> WriteOutcome:
        verdict = classify(exc, endpoint)
        if verdict.throttled:
            self._gate.throttled(endpoint, endpoint, verdict.retry_after or 1.0, verdict.reason)
        return verdict.for_write(key)


def _bearer(token: str) -> dict[str, str]:
    """The headers of one call carrying an OAuth access token (a fresh dict: the SDK adds
    to it)."""
    return {"Authorization": f"Bearer {token}"}


def _quoted(value: str) -> str:
    """A string literal for Klaviyo's filter syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _at(attributes: Any, path: str) -> Any:
    """The value at a dotted attribute path (`location.city`), None when absent or empty."""
    node = attributes
    for step in path.split("."):
        node = node.get(step) if isinstance(node, dict) else None
    if isinstance(node, datetime):
        return format_time(node)
    return None if node in (None, "") else node


def _identified(write: ProfileWrite) -> bool:
    ref = write.profile
    return bool(ref.klaviyo_id or ref.email or ref.external_id)


def _resource(write: ProfileWrite) -> dict[str, Any]:
    """The profile resource: one identifier (Klaviyo id, else email, else external id)."""
    ref = write.profile
    attributes: dict[str, Any] = {"properties": dict(write.properties)}
    resource: dict[str, Any] = {"type": "profile", "attributes": attributes}
    if ref.klaviyo_id:
        resource["id"] = ref.klaviyo_id
    elif ref.email:
        attributes["email"] = ref.email
    elif ref.external_id:
        attributes["external_id"] = ref.external_id
    return resource


def _jobs(writes: Sequence[ProfileWrite]) -> list[list[ProfileWrite]]:
    """Split into jobs within Klaviyo's profile-count and payload limits."""
    jobs: list[list[ProfileWrite]] = [[]]
    size = 0
    for write in writes:
        weight = len(json.dumps(_resource(write))) + 1
        if jobs[-1] and (len(jobs[-1]) >= MAX_JOB_PROFILES or size + weight > MAX_JOB_BYTES):
            jobs.append([])
            size = 0
        jobs[-1].append(write)
        size += weight
    return [job for job in jobs if job]
