"""Late and missing data: reading what a rule `requires` from the profile's platform.

When the rules answer `delayed_data` because a rule that could win lacks a field (see
`Decision.needs`), the processor asks `LateData` to read those fields from a platform that
can address the profile (`ProfileSource`), and waits at most the budget for the answer:

- answered in time: the fields are folded into the context (`context.absorb`) and the
  profile is decided again; only that decision is written;
- not answered in time: the `delayed_data` decision is written now; the answer, when it
  comes, is queued durably (a re-decide item carrying the fields, `FETCHED`), and the real
  decision replaces the delayed one (pending writes coalesce, so when it comes before the
  batch flushes only the real one is written);
- the platform is down (RETRY: 5xx, 429, timeouts): the last decided block stays (nothing
  is written) unless there is none yet, and the fetch is tried again later.

Every fetch that has not been folded in leaves a durable retry behind: a timer named
`fetch:<profile key>` that queues a re-decide (which fetches again) after a backoff. So a
crash between writing the delayed block and the data arriving, or a late answer that
failed, never leaves the delayed block standing. After `MAX_ATTEMPTS` the fields count
as absent (for the TTL) and the rules decide without them.

What was fetched is reused while fresh (the TTL) and read again when a profile change
makes it stale (see `context`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.core.context import absorb, fetch_state
from connector.core.decisions import Decision, Outcome
from connector.core.events import (
    IDENTIFIER_KINDS,
    PLATFORM_IDENTIFIERS,
    ProfileRef,
    format_time,
    parse_time,
)
from connector.core.intake import REDECIDE
from connector.core.ports import FetchedProfile, FetchStatus, ProfileSource
from connector.core.profile_fields import fetchable
from connector.core.storage import Inbound, PipelineStore, Timer

log = logging.getLogger(__name__)

#: The key of a queued re-decide item that carries fields read from a platform.
FETCHED = "fetched"
#: The key of a queued re-decide item that says which fetch attempt it is.
ATTEMPT = "fetch_attempt"
#: Prefix of the timer that retries a profile's fetch (timers are named per profile).
RETRY_TIMER = "fetch:"
#: The default wait for a platform's answer before the delayed decision is written.
DEFAULT_BUDGET = 0.08
#: The default time fetched fields are reused before they are read again.
DEFAULT_TTL = timedelta(minutes=10)
#: How long a fetch may take in all (the SDK call's timeout): a retry is armed beyond it.
FETCH_TIMEOUT = 5.0
#: Retry waits double from `RETRY_BASE` seconds up to `RETRY_CAP`.
RETRY_BASE = 2.0
RETRY_CAP = 300.0
#: Fetches tried before the rules decide without the fields (about 25 minutes of retries).
MAX_ATTEMPTS = 10
#: Outcomes that show a block worth keeping while the platform is down.
_GOOD = frozenset({Outcome.RULE.value, Outcome.FALLBACK.value, Outcome.HOLDOUT.value})

Submit = Callable[[Callable[[], FetchedProfile]], "Future[FetchedProfile]"]


@dataclass
class Ask:
    """One profile's fetch in flight."""

    account: str
    profile_key: str
    platform: str
    identifiers: Mapping[str, str]
    platforms: tuple[str, ...]
    wanted: tuple[str, ...]  # the fields the rules lack (`is_new` included)
    fields: tuple[str, ...]  # what is read from the platform (`created_at` for `is_new`)
    attempt: int
    future: Future[FetchedProfile]


@dataclass
class LateData:
    """Fetches missing profile fields within a budget; see the module docstring."""

    sources: Mapping[str, Mapping[str, ProfileSource]]  # account -> platform -> its reader
    submit: Submit
    store: PipelineStore
    clock: Callable[[], datetime]
    budget: float = DEFAULT_BUDGET  # seconds
    ttl: timedelta = DEFAULT_TTL

    def ask(
        self,
        account: str,
        key: str,
        context: Mapping[str, Any],
        decision: Decision,
        platforms: Sequence[str],
        attempt: int,
    ) -> Ask | None:
        """Start reading what `decision` lacks, or None when nothing can be read (no field
        a platform has, none left to read, or no platform that can address the profile)."""
        if decision.outcome is not Outcome.DELAYED_DATA:
            return None
        now = self.clock()
        wanted = tuple(
            name
            for name in _names(decision.needs)
            if fetchable(name) and fetch_state(context, name, now) != "fresh"
        )
        if not wanted:
            return None
        identifiers = dict(context.get("identifiers") or {})
        readers = self.sources.get(account, {})
        platform = next(
            (p for p in platforms if p in readers and self._can_address(p, identifiers)), None
        )
        if platform is None:
            return None
        fields = tuple(dict.fromkeys(f for f in map(fetchable, wanted) if f is not None))
        source = readers[platform]
        profile = ProfileRef(**{k: identifiers[k] for k in IDENTIFIER_KINDS if k in identifiers})
        future = self.submit(lambda: source.fetch(profile, fields))
        return Ask(
            account, key, platform, identifiers, tuple(platforms), wanted, fields, attempt, future
        )

    def wait(self, asks: Sequence[Ask], seconds: float) -> None:
        """Wait up to `seconds` for every answer (no wait when all are in)."""
        if asks:
            wait([a.future for a in asks], timeout=max(0.0, seconds))

    def answer(self, ask: Ask) -> FetchedProfile | None:
        """The answer if it came in, else None (then call `late`)."""
        if not ask.future.done():
            return None
        try:
            return ask.future.result()
        except Exception as exc:  # a source must not raise; if one does, it is a retry
            log.exception("fetching %s from %s failed", ask.profile_key, ask.platform)
            return FetchedProfile(FetchStatus.RETRY, reason=f"unexpected {type(exc).__name__}")

    def fold(self, context: Mapping[str, Any], ask: Ask, answer: FetchedProfile) -> dict[str, Any]:
        """The context with an answer (FOUND, SKIPPED or FATAL) folded in; clears the retry."""
        if answer.status is FetchStatus.FATAL:
            log.error(
                "cannot read %s from %s: %s; deciding without %s",
                ask.profile_key, ask.platform, answer.reason, ", ".join(ask.wanted),
            )  # fmt: skip
        self.store.clear_timer(ask.account, RETRY_TIMER + ask.profile_key)
        now = self.clock()
        return absorb(
            context,
            answer.fields,
            (*ask.wanted, *ask.fields),
            stamp=answer.updated_at or now,
            now=now,
            fresh_until=now + self.ttl,
        )

    def failed(self, context: Mapping[str, Any], ask: Ask, answer: FetchedProfile) -> bool:
        """A RETRY answer: arm the retry; True when the last decided block should stay
        (the context has one), False when the delayed block should be written."""
        log.warning(
            "reading %s from %s failed (attempt %d): %s; trying again later",
            ask.profile_key, ask.platform, ask.attempt, answer.reason,
        )  # fmt: skip
        self._retry(ask, answer.retry_after)
        return context.get("decided") in _GOOD

    def late(self, ask: Ask) -> None:
        """No answer within the budget: the answer is queued when it comes, and a retry is
        armed beyond the fetch's timeout in case it never does."""
        self._retry(ask, FETCH_TIMEOUT)
        ask.future.add_done_callback(lambda _f: self._arrived(ask))

    def given_up(self, context: Mapping[str, Any], ask: Ask) -> dict[str, Any]:
        """After `MAX_ATTEMPTS`: the wanted fields count as absent for the TTL."""
        log.error(
            "giving up reading %s from %s after %d attempts; deciding without %s",
            ask.profile_key, ask.platform, ask.attempt, ", ".join(ask.wanted),
        )  # fmt: skip
        give_up = FetchedProfile(FetchStatus.SKIPPED, reason="gave up")
        return self.fold(context, ask, give_up)

    def _arrived(self, ask: Ask) -> None:
        answer = self.answer(ask)
        if answer is None or answer.status is FetchStatus.RETRY:
            return  # the armed retry takes over
        payload = {
            "status": answer.status.value,
            "wanted": list(ask.wanted),
            "fields": list(ask.fields),
            "values": dict(answer.fields),
            "updated_at": format_time(answer.updated_at) if answer.updated_at else None,
            "reason": answer.reason,
        }
        item = Inbound(
            ask.account,
            f"fetched:{uuid.uuid4().hex}",
            {REDECIDE: dict(ask.identifiers), FETCHED: payload},
            ask.platforms,
        )
        try:
            self.store.enqueue([item], self.clock().timestamp())
        except Exception:  # full queue or store down: the armed retry fetches again
            log.exception("could not queue the late answer for %s", ask.profile_key)

    def _retry(self, ask: Ask, at_least: float | None) -> None:
        wait_for = max(at_least or 0.0, min(RETRY_CAP, RETRY_BASE * 2 ** (ask.attempt - 1)))
        fire_at = self.clock().timestamp() + wait_for
        event = {REDECIDE: dict(ask.identifiers), ATTEMPT: ask.attempt + 1}
        dedup = f"{RETRY_TIMER}{ask.profile_key}:{ask.attempt + 1}:{uuid.uuid4().hex[:8]}"
        timer = Timer(fire_at, dedup, event, ask.platforms)
        self.store.set_timer(ask.account, RETRY_TIMER + ask.profile_key, timer)

    def _can_address(self, platform: str, identifiers: Mapping[str, str]) -> bool:
        usable = PLATFORM_IDENTIFIERS.get(platform, ())
        return any(identifiers.get(kind) for kind in usable)


def payload_answer(payload: Mapping[str, Any]) -> tuple[FetchedProfile, tuple[str, ...]]:
    """A queued late answer (`FETCHED`) read back: the answer and the fields asked."""
    updated = payload.get("updated_at")
    answer = FetchedProfile(
        FetchStatus(str(payload.get("status", FetchStatus.SKIPPED.value))),
        dict(payload.get("values") or {}),
        parse_time(updated, "updated_at") if updated else None,
        str(payload.get("reason", "")),
    )
    asked = tuple(str(f) for f in [*(payload.get("wanted") or []), *(payload.get("fields") or [])])
    return answer, asked


def _names(paths: Sequence[str]) -> list[str]:
    """`profile.city` -> `city`; paths outside the profile are left out."""
    out: list[str] = []
    for path in paths:
        root, _, rest = path.partition(".")
        name = rest.split(".")[0]
        if root == "profile" and name and name not in out:
            out.append(name)
    return out
