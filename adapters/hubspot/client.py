"""`HubSpotClient`: the `PlatformClient` port over the official `hubspot-api-client` SDK.

`fetch` (the `ProfileSource` port) reads one contact's properties with `basic_api.get_by_id`.
Writes with a HubSpot record id go through `batch/update`; the others, by email, through
`batch/upsert` (`idProperty=email`: an unknown email creates the contact); up to 100 per
call. Each record's outcome is read from the answer (200, or 207 with per-record
`errors`), matched by `objectWriteTraceId`. A 2xx with neither results nor errors is a
failure (RETRY). A 400 for a whole batch is split in halves until the bad record is
alone, so the others are written and only it is FATAL.

The access token is a string (a private app's) or a `TokenProvider`, asked before every
call (an OAuth app's tokens expire every 30 minutes). After a 401 the provider is asked
for a refreshed token and the call is made once more. When it has no usable token (the
portal disconnected, say) every write comes back RETRY, throttled: the account pauses
and its writes wait, nothing is dead-lettered.

The SDK's retries are off (`Retry(0)`), every call has a timeout and passes the injected
`CallGate` first (one limit for the whole account: endpoint `API`). A 429 pauses the
account; the rest of the batch is then not sent and comes back throttled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, tzinfo
from typing import Any

import hubspot.crm.properties as props
import urllib3
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputUpsert,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputUpsert,
)

from adapters.hubspot.errors import API_EXCEPTIONS, classify, classify_record_error
from connector.core.adaptive import AdaptiveRate
from connector.core.events import ProfileRef
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
from connector.core.profile_fields import hubspot_property
from connector.core.properties_schema import PropertySchema, PropertySpec
from connector.core.ratelimit import RateLimiter, RollingWindowLimiter
from connector.core.redaction import scrub
from connector.core.throttle import CallGate, Throttle
from connector.core.tokens import TokenUnavailable, with_fresh_token

API = "api"  # every call counts against one account-wide limit (search aside)
LIMIT_PER_10S = 100  # private apps on Free/Starter; 190 on Pro/Enterprise, 110 for OAuth apps
MAX_BATCH = 100  # HubSpot's batch size limit
MISSING_PROPERTY = "PROPERTY_DOESNT_EXIST"  # HubSpot's error code for an unknown property

Clock = Callable[[], float]
#: The current access token; with `force_refresh` a new one (after a 401 for `stale`).
#: Raises `TokenUnavailable` when there is none to use.
TokenProvider = Callable[..., str]


def hubspot_throttle(
    pauses: PauseBook,
    sleep: Callable[[float], None],
    clock: Clock,
    limit_per_10s: int = LIMIT_PER_10S,
    limiter: RateLimiter | None = None,
) -> Throttle:
    """The gate for one HubSpot account: HubSpot's exact rolling ten-second window, kept in
    this process unless a shared `limiter` (the same window, in Redis) is given."""
    window = limiter or RollingWindowLimiter(limit_per_10s, 10.0, clock)
    return Throttle(window, pauses, {API: AdaptiveRate(limit_per_10s / 10.0, clock)}, sleep)


class HubSpotClient:
    platform = "hubspot"
    max_batch = MAX_BATCH

    def __init__(
        self,
        access_token: str | TokenProvider,
        *,
        base_url: str,
        gate: CallGate,
        schema: PropertySchema,
        timeout: float = 10.0,
        clock: Clock = time.time,
        account_tz: tzinfo = UTC,
    ) -> None:
        fixed = access_token if isinstance(access_token, str) else None
        self._provider = None if isinstance(access_token, str) else access_token
        sdk = HubSpot(
            access_token=fixed,
            retry=urllib3.Retry(0, redirect=False),
            host=base_url.rstrip("/"),
        )
        self._batch = sdk.crm.contacts.batch_api  # each access builds a client: keep one
        self._basic = sdk.crm.contacts.basic_api
        self._reprovisioning = False
        self._properties = sdk.crm.properties.core_api
        self._groups = sdk.crm.properties.groups_api
        self._gate = gate
        self._schema = schema
        self._timeout = timeout
        self._clock = clock
        self._tz = account_tz
        self._unchecked = props.Configuration()
        self._unchecked.client_side_validation = False  # the SDK's enum lacks fieldType html

    def write(self, writes: Sequence[ProfileWrite]) -> list[WriteOutcome]:
        """One outcome per write, in order; never raises for a platform answer."""
        if len(writes) > MAX_BATCH:
            raise ValueError(f"writes: at most {MAX_BATCH} per call, got {len(writes)}")
        by_id = [w for w in writes if w.profile.hubspot_id]
        by_email = [w for w in writes if not w.profile.hubspot_id and w.profile.email]
        found = {o.key: o for o in self._send(by_id, upsert=False)}
        stop = next((o for o in found.values() if o.throttled), None)
        if stop is not None:
            found.update(
                {w.key: stop.for_write(w.key, "not sent: " + stop.reason) for w in by_email}
            )
        else:
            found.update({o.key: o for o in self._send(by_email, upsert=True)})
        none = WriteOutcome("", WriteStatus.FATAL, "no HubSpot record id or email to write by")
        return [found.get(w.key) or none.for_write(w.key) for w in writes]

    def fetch(self, profile: ProfileRef, fields: Sequence[str]) -> FetchedProfile:
        """Read `fields` (context names, mapped by `profile_fields`) of one contact with
        `basic_api.get_by_id`, by record id, else by email (`id_property="email"`); never
        raises for a platform answer. A paused account answers RETRY without a call."""
        record = profile.hubspot_id or profile.email
        if record is None:
            return FetchedProfile(FetchStatus.FATAL, reason="no HubSpot record id or email")
        paused = self._gate.paused_for(API)
        if paused > 0:
            return FetchedProfile(FetchStatus.RETRY, reason="account paused", retry_after=paused)
        names = {hubspot_property(f): f for f in fields}
        by_email = {} if profile.hubspot_id else {"id_property": "email"}
        self._gate.wait_turn(API)
        try:
            answer = self._basic.get_by_id(
                record,
                properties=sorted(names),
                archived=False,
                _request_timeout=min(self._timeout, FETCH_TIMEOUT),
                **by_email,
            )
        except Exception as exc:
            verdict = classify(exc, now=self._clock(), tz=self._tz)
            if verdict.throttled:
                self._gate.throttled(
                    API, verdict.pause_scope, verdict.retry_after or 1.0, verdict.reason
                )
            return FetchedProfile.failed(verdict)
        self._gate.succeeded(API)
        found = answer.properties or {}
        values = {f: found[n] for n, f in names.items() if found.get(n) not in (None, "")}
        return FetchedProfile(FetchStatus.FOUND, values, updated_at=answer.updated_at)

    # -- batches ----------------------------------------------------------------------
    def _send(self, writes: Sequence[ProfileWrite], *, upsert: bool) -> list[WriteOutcome]:
        if not writes:
            return []
        try:
            answer = self._authorized(lambda auth: self._call(writes, upsert, auth))
        except TokenUnavailable as exc:
            return self._unavailable(exc, writes)
        except Exception as exc:
            return self._failed(exc, writes, upsert)
        self._gate.succeeded(API)
        return self._read(answer, writes, upsert)

    # -- access tokens ----------------------------------------------------------------
    def _authorized(self, call: Callable[[dict[str, str] | None], Any]) -> Any:
        """`call(auth)` after the gate, with the current token; once more with a refreshed
        token after a 401. Raises what the call raises, or `TokenUnavailable`."""
        if self._provider is None:
            self._gate.wait_turn(API)
            return call(None)
        return with_fresh_token(
            self._provider,
            lambda: self._gate.wait_turn(API),
            lambda token: call(_bearer(token)),
            lambda exc: isinstance(exc, API_EXCEPTIONS) and exc.status == 401,
        )

    def _unavailable(
        self, exc: TokenUnavailable, writes: Sequence[ProfileWrite]
    ) -> list[WriteOutcome]:
        """No token to write with: pause the account; the writes wait, none is lost."""
        reason = scrub(f"no access token: {exc.reason}")
        self._gate.throttled(API, ACCOUNT_SCOPE, exc.retry_after, reason)
        outcome = WriteOutcome(
            "", WriteStatus.RETRY, reason, retry_after=exc.retry_after, throttled=True
        )
        return [outcome.for_write(w.key) for w in writes]

    def _call(
        self, writes: Sequence[ProfileWrite], upsert: bool, auth: dict[str, str] | None = None
    ) -> Any:
        if upsert:
            inputs = [
                SimplePublicObjectBatchInputUpsert(
                    id_property="email",
                    id=w.profile.email,
                    properties=dict(w.properties),
                    object_write_trace_id=str(i),
                )
                for i, w in enumerate(writes)
            ]
            return self._batch.upsert(
                BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs),
                _request_timeout=self._timeout,
                _request_auth=auth,
            )
        inputs_by_id = [
            SimplePublicObjectBatchInput(
                id=w.profile.hubspot_id, properties=dict(w.properties), object_write_trace_id=str(i)
            )
            for i, w in enumerate(writes)
        ]
        return self._batch.update(
            BatchInputSimplePublicObjectBatchInput(inputs=inputs_by_id),
            _request_timeout=self._timeout,
            _request_auth=auth,
        )

    def _failed(
        self, exc: Exception, writes: Sequence[ProfileWrite], upsert: bool
    ) -> list[WriteOutcome]:
        verdict = classify(exc, now=self._clock(), tz=self._tz)
        if verdict.throttled:
            self._gate.throttled(
                API, verdict.pause_scope, verdict.retry_after or 1.0, verdict.reason
            )
        if getattr(exc, "status", None) == 400 and MISSING_PROPERTY in verdict.reason:
            return self._reprovisioned(writes, upsert, verdict)
        if getattr(exc, "status", None) == 400 and len(writes) > 1:
            return self._split(writes, upsert)
        return [verdict.for_write(w.key) for w in writes]

    def _reprovisioned(
        self, writes: Sequence[ProfileWrite], upsert: bool, verdict: WriteOutcome
    ) -> list[WriteOutcome]:
        """Our properties are missing (deleted in HubSpot, say): create them, send again once.

        Every record of the batch fails alike, so splitting would only multiply calls.
        """
        if self._reprovisioning:
            return [verdict.for_write(w.key) for w in writes]
        report = self.provision()
        if report.problems:
            reason = "properties missing and could not be created: " + "; ".join(report.problems)
            return [verdict.for_write(w.key, scrub(reason)) for w in writes]
        self._reprovisioning = True
        try:
            return self._send(writes, upsert=upsert)
        finally:
            self._reprovisioning = False

    def _split(self, writes: Sequence[ProfileWrite], upsert: bool) -> list[WriteOutcome]:
        """Send each half on its own, so a 400 ends up with the record that caused it."""
        middle = len(writes) // 2
        first = self._send(writes[:middle], upsert=upsert)
        stop = next((o for o in first if o.throttled), None)
        if stop is not None:
            return first + [
                stop.for_write(w.key, "not sent: " + stop.reason) for w in writes[middle:]
            ]
        return first + self._send(writes[middle:], upsert=upsert)

    def _read(
        self, answer: Any, writes: Sequence[ProfileWrite], upsert: bool
    ) -> list[WriteOutcome]:
        results = list(getattr(answer, "results", None) or [])
        errors = list(getattr(answer, "errors", None) or [])
        if not results and not errors:
            empty = "HubSpot answered 2xx with neither results nor errors"
            return [WriteOutcome(w.key, WriteStatus.RETRY, empty) for w in writes]
        index = _index(writes, upsert)
        found: dict[int, WriteOutcome] = {}
        for result in results:
            at = _position(index, [result.object_write_trace_id], _result_ids(result, upsert))
            if at is not None:
                found[at] = WriteOutcome(
                    writes[at].key, WriteStatus.WRITTEN, platform_id=str(result.id)
                )
        for error in errors:
            context = error.context or {}
            verdict = classify_record_error(str(error.category), str(error.message))
            for at in _positions(index, context):
                found.setdefault(at, verdict.for_write(writes[at].key))
        missing = WriteOutcome("", WriteStatus.RETRY, "HubSpot gave no result for this record")
        return [found.get(i) or missing.for_write(w.key) for i, w in enumerate(writes)]

    # -- provisioning -----------------------------------------------------------------
    def provision(self) -> ProvisionReport:
        """Creates the schema's group and every property that is missing (idempotent);
        an existing property of the wrong type is reported in `problems`. The first call
        creates the group, so a token that cannot write schemas fails there."""
        group_name = self._schema.group
        group = props.PropertyGroupCreate(
            name=group_name, label=self._schema.group_label, display_order=-1
        )
        outcome = self._provision_call(
            lambda auth: self._groups.create(
                "contacts", group, _request_timeout=self._timeout, _request_auth=auth
            )
        )
        if outcome is not None and outcome != 409:
            return ProvisionReport(problems=(f"group {group_name}: {outcome}",))
        created = [f"group {group_name}"] if outcome is None else []
        existing = [f"group {group_name}"] if outcome == 409 else []
        try:
            everything = self._authorized(
                lambda auth: self._properties.get_all(
                    "contacts", _request_timeout=self._timeout, _request_auth=auth
                )
            )
            defined = {p.name: p for p in everything.results}
        except TokenUnavailable as exc:
            problem = f"properties: no access token: {exc.reason}"
            return ProvisionReport(tuple(created), tuple(existing), (problem,))
        except Exception as exc:
            reason = classify(exc, now=self._clock(), tz=self._tz).reason
            return ProvisionReport(tuple(created), tuple(existing), (f"properties: {reason}",))
        self._gate.succeeded(API)
        problems: list[str] = []
        for spec in self._schema.properties:
            have = defined.get(spec.name)
            if have is None:
                outcome = self._create_property(spec)
                if outcome is None:
                    created.append(spec.name)
                elif outcome == 409:  # created meanwhile
                    existing.append(spec.name)
                else:
                    problems.append(f"{spec.name}: {outcome}")
            elif (have.type, have.field_type) != ("string", spec.field_type):
                problems.append(
                    f"{spec.name} is {have.type}/{have.field_type}, "
                    f"expected string/{spec.field_type}"
                )
            else:
                existing.append(spec.name)
        return ProvisionReport(tuple(created), tuple(existing), tuple(problems))

    def _create_property(self, spec: PropertySpec) -> int | str | None:
        body = props.PropertyCreate(
            name=spec.name,
            label=spec.label,
            type="string",
            field_type=spec.field_type,
            group_name=self._schema.group,
            description=spec.description,
            local_vars_configuration=self._unchecked,
        )
        return self._provision_call(
            lambda auth: self._properties.create(
                "contacts", body, _request_timeout=self._timeout, _request_auth=auth
            )
        )

    def _provision_call(self, call: Callable[[dict[str, str] | None], Any]) -> int | str | None:
        """None when created, 409 when it exists, else the reason it failed."""
        try:
            self._authorized(call)
        except TokenUnavailable as exc:
            return f"no access token: {exc.reason}"
        except API_EXCEPTIONS as exc:
            if exc.status == 409:
                return 409
            return classify(exc, now=self._clock(), tz=self._tz).reason
        except Exception as exc:
            return classify(exc, now=self._clock(), tz=self._tz).reason
        self._gate.succeeded(API)
        return None


def _bearer(token: str) -> dict[str, str]:
    """The SDK's per-call auth override (`_request_auth`) for an OAuth access token."""
    return {"type": "oauth2", "in": "header", "key": "Authorization", "value": f"Bearer {token}"}


def _index(writes: Sequence[ProfileWrite], upsert: bool) -> dict[str, int]:
    """Trace ids and record ids (ids or emails) to positions in `writes`."""
    index = {str(i): i for i in range(len(writes))}
    for i, w in enumerate(writes):
        record = w.profile.email if upsert else w.profile.hubspot_id
        if record:
            index.setdefault("id:" + record.lower(), i)
    return index


def _result_ids(result: Any, upsert: bool) -> list[str]:
    if upsert:
        email = (result.properties or {}).get("email")
        return [str(email)] if email else []
    return [str(result.id)]


def _position(index: dict[str, int], traces: list[Any], ids: list[str]) -> int | None:
    for trace in traces:
        if trace is not None and str(trace) in index:
            return index[str(trace)]
    for record in ids:
        if "id:" + record.lower() in index:
            return index["id:" + record.lower()]
    return None


def _positions(index: dict[str, int], context: dict[str, Any]) -> list[int]:
    traces = list(context.get("objectWriteTraceId") or [])
    ids = [str(i) for i in context.get("ids") or []]
    found = {_position(index, [t], []) for t in traces} | {_position(index, [], [i]) for i in ids}
    return sorted(p for p in found if p is not None)
