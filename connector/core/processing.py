"""Turns queued events into decided, rendered property sets waiting for delivery.

`Processor.run_once` claims a batch of events, folds each into its profile's context in
order, decides once per profile with the profile's newest event (so a late, older event
updates the context but never brings back an older decision), renders the block, and
commits contexts, pending writes and the settled events in one step. A property set equal
to the one last written (ignoring `dcb_computed_at`) is not queued again. A browser's
event is written only to the platforms that already know the profile (`_writable`), so a
browser never creates a contact or profile.

A profile decided `delayed_data` for lack of a field has that field read from its platform
first, within a budget (`late_data`; see `connector.core.late_data`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from connector.core.abandonment import DEFAULT_ABANDON_AFTER, Arm, Disarm, timer_for
from connector.core.browser import is_browser
from connector.core.context import absorb, fold, view
from connector.core.decisions import Decision
from connector.core.events import (
    PLATFORM_IDENTIFIERS,
    PLATFORM_NATIVE_IDS,
    Event,
    EventError,
    parse_event,
    parse_time,
)
from connector.core.intake import ERASE, LINK, REDECIDE
from connector.core.late_data import (
    ATTEMPT,
    DEFAULT_TTL,
    FETCHED,
    MAX_ATTEMPTS,
    RETRY_TIMER,
    Ask,
    LateData,
    payload_answer,
)
from connector.core.ports import FetchStatus
from connector.core.properties import build_properties, fingerprint
from connector.core.rules import RuleSet, decide
from connector.core.storage import Claimed, PendingWrite, PipelineStore, ProfileUpdate, Timer

log = logging.getLogger(__name__)

#: Fetch rounds per batch within the budget: a decision made with fetched data may lack
#: another field (a later rule's); past this, that one is read and answers late.
FETCH_ROUNDS = 3


#: Context key: the platforms the profile exists on, as far as the connector knows.
KNOWN_ON = "known_on"


class Rendered(Protocol):
    @property
    def block_id(self) -> str: ...

    @property
    def outputs(self) -> Mapping[str, str]: ...


class Renderer(Protocol):
    """Renders a block; never raises (a failing block renders the fallback)."""

    def render(
        self,
        block_id: str,
        params: Mapping[str, Any],
        event: Event | None,
        profile: Mapping[str, Any],
    ) -> Rendered: ...


@dataclass(frozen=True, slots=True)
class Decided:
    """What one profile's batch decided, for metrics and tests."""

    profile_key: str
    block: str
    rule_id: str | None
    platforms: tuple[str, ...]  # written to these unless a platform already has the set


@dataclass
class Processor:
    """Claims events from the store and turns them into pending writes."""

    store: PipelineStore
    ruleset_for: Callable[[str], RuleSet]
    renderer: Renderer
    clock: Callable[[], datetime]
    consumer: str = "processor"
    abandon_after: timedelta = DEFAULT_ABANDON_AFTER  # the account's; a rule set's wins
    #: An account's own window, when it has one (else `abandon_after`).
    abandon_after_for: Callable[[str], timedelta | None] = field(default=lambda _account: None)
    on_decided: Callable[[Decided], None] = field(default=lambda _outcome: None)
    late_data: LateData | None = None  # reads missing profile fields from the platforms

    def run_once(self, limit: int = 200) -> int:
        """Process up to `limit` queued events; returns how many were claimed."""
        now = self.clock()
        claimed = self.store.claim(self.consumer, limit, now.timestamp())
        segment: list[Claimed] = []
        for item in claimed:  # an erase request splits the batch, keeping order around it
            if ERASE in item.event:
                self._commit(segment, now)
                segment = []
                self._erase(item, now)
            else:
                segment.append(item)
        self._commit(segment, now)
        return len(claimed)

    def _commit(self, claimed: Sequence[Claimed], now: datetime) -> None:
        if not claimed:
            return
        batches = self._by_profile(claimed)
        found = [self._draft(account, key, items, now) for (account, key), items in batches.items()]
        drafts = [d for d in found if d is not None]
        if self.late_data is not None:
            self._fetch_missing(self.late_data, drafts)
        updates = [self._update(d, now) for d in drafts]
        self.store.commit(updates, [c.id for c in claimed], now.timestamp())

    def _erase(self, item: Claimed, now: datetime) -> None:
        """Forget the profile the erase request names (idempotent, so a rerun is harmless)."""
        ids = {str(k): str(v) for k, v in dict(item.event[ERASE]).items()}
        key = self.store.resolve_profile(item.account, ids)
        if key is not None:
            # Its timers first: a cart timer firing after the erase would bring the shopper
            # back from the cart it carries.
            self.store.clear_timer(item.account, key)
            self.store.clear_timer(item.account, RETRY_TIMER + key)
            self.store.erase(item.account, key)
            log.info("erased profile %s of account %s at the platform's request", key, item.account)
        self.store.commit([], [item.id], now.timestamp())

    def _rearm(
        self,
        account: str,
        key: str,
        events: Sequence[Event],
        context: Mapping[str, Any],
        platforms: tuple[str, ...],
        ruleset: RuleSet,
    ) -> None:
        """Arm, re-arm or disarm the profile's abandonment timer. Done before the commit
        that settles these events: a crash in between only repeats the same change."""
        window = ruleset.abandon_after or self.abandon_after_for(account) or self.abandon_after
        change = timer_for(events, context, window)
        if isinstance(change, Arm):
            timer = Timer(
                change.fire_at.timestamp(), str(change.event["event_id"]), change.event, platforms
            )
            self.store.set_timer(account, key, timer)
        elif isinstance(change, Disarm):
            self.store.clear_timer(account, key)

    def _by_profile(self, claimed: Sequence[Claimed]) -> dict[tuple[str, str], list[_Item]]:
        """Events grouped by profile, identity links within the batch included."""
        groups: dict[tuple[str, str], list[_Item]] = {}
        known: dict[tuple[str, str], str] = {}  # (account, "kind:value") -> profile key
        for item in claimed:
            fetched: Mapping[str, Any] | None = None
            linked: Mapping[str, str] | None = None
            attempt = 1
            if REDECIDE in item.event:
                event = None
                ids = tuple((str(k), str(v)) for k, v in dict(item.event[REDECIDE]).items())
                fetched = item.event.get(FETCHED)
                attempt = int(item.event.get(ATTEMPT, 1))
                linked = item.event.get(LINK)
            else:
                try:
                    event = parse_event(item.event, received_at=self.clock())
                except EventError as exc:  # stored events were valid; a bad one must not block
                    log.error("dropping an unreadable queued event %s: %s", item.id, exc)
                    continue
                ids = event.profile.identifiers()
            if not ids:
                continue
            key = next(
                (
                    known[(item.account, f"{k}:{v}")]
                    for k, v in ids
                    if (item.account, f"{k}:{v}") in known
                ),
                None,
            )
            key = key or self.store.resolve_profile(item.account, dict(ids))
            key = key or "{}:{}".format(*ids[0])
            for kind, value in ids:
                known[(item.account, f"{kind}:{value}")] = key
            groups.setdefault((item.account, key), []).append(
                _Item(event, item.platforms, fetched, attempt, linked)
            )
        return groups

    def _draft(self, account: str, key: str, items: list[_Item], now: datetime) -> _Draft | None:
        """Fold the profile's events (and fetched fields) and decide; None when there is
        nothing to decide on (a replay for a profile erased since)."""
        context: dict[str, Any] = self.store.load_context(account, key) or {}
        for item in items:  # a platform's own id for the profile, learnt when it was written
            if item.linked and context:
                ids = dict(context.get("identifiers") or {})
                context["identifiers"] = {**ids, **{str(k): str(v) for k, v in item.linked.items()}}
        events = sorted(
            (i.event for i in items if i.event is not None), key=lambda e: e.occurred_at
        )
        for event in events:
            context = fold(context, event)
            latest = context.get("last_event")
            if latest is None or event.occurred_at >= _time(latest):
                context["last_event"] = event.to_json()
        if "last_event" not in context:
            log.info("nothing to decide for %s: no context (erased?)", key)
            return None
        try:
            ruleset = self.ruleset_for(account)
        except KeyError:  # queued before the account was removed from the configuration
            log.error("dropping events of account %s: it is not configured", account)
            return None
        if any(item.fetched is not None for item in items):
            self.store.clear_timer(account, RETRY_TIMER + key)  # the late answer came
        for item in items:
            if item.fetched is not None:
                answer, asked = payload_answer(item.fetched)
                ttl = self.late_data.ttl if self.late_data is not None else DEFAULT_TTL
                context = absorb(
                    context, answer.fields, asked,
                    stamp=answer.updated_at or now, now=now, fresh_until=now + ttl,
                )  # fmt: skip
        platforms = tuple(_writable(context, items))
        self._rearm(account, key, events, context, platforms, ruleset)
        event = parse_event(context["last_event"], received_at=now)
        attempt = max((i.attempt for i in items), default=1)
        decision = decide(ruleset, event, context, now)
        return _Draft(account, key, context, event, ruleset, platforms, decision, attempt)

    def _fetch_missing(self, late: LateData, drafts: Sequence[_Draft]) -> None:
        """Read what delayed decisions lack, all profiles at once within one budget; fold
        what comes in time and decide again (another round when the new decision lacks
        something else; once the budget is spent, reads are left to answer late)."""
        started = self.clock()
        open_drafts = list(drafts)
        for _ in range(FETCH_ROUNDS):
            asks = self._asks(late, open_drafts)
            if not asks:
                return
            left = late.budget - (self.clock() - started).total_seconds()
            late.wait([a for _, a in asks], left)
            open_drafts = [d for d, ask in asks if self._resolve(late, d, ask)]
        for _, ask in self._asks(late, open_drafts):  # rounds spent: the answer comes later
            late.late(ask)

    @staticmethod
    def _asks(late: LateData, drafts: Sequence[_Draft]) -> list[tuple[_Draft, Ask]]:
        return [
            (d, ask)
            for d in drafts
            if (ask := late.ask(d.account, d.key, d.context, d.decision, d.platforms,
                                d.attempt)) is not None
        ]  # fmt: skip

    def _resolve(self, late: LateData, draft: _Draft, ask: Ask) -> bool:
        """Apply one fetch's outcome to its draft; True when the draft was decided again
        with the answer (and may lack something else)."""
        answer = late.answer(ask)
        if answer is None:
            late.late(ask)  # the delayed block is written; the answer follows
            return False
        if answer.status is FetchStatus.RETRY and ask.attempt < MAX_ATTEMPTS:
            draft.hold = late.failed(draft.context, ask, answer)
            return False
        if answer.status is FetchStatus.RETRY:
            draft.context = late.given_up(draft.context, ask)
        else:
            draft.context = late.fold(draft.context, ask, answer)
        draft.decision = decide(draft.ruleset, draft.event, draft.context, self.clock())
        return True

    def _update(self, draft: _Draft, now: datetime) -> ProfileUpdate:
        """Render the draft's decision and say what to write (nothing while it holds)."""
        account, key, context, decision = draft.account, draft.key, draft.context, draft.decision
        identifiers: dict[str, str] = dict(context.get("identifiers") or {})
        if draft.hold:
            log.info("%s: keeping the last block while its data cannot be read", key)
            return ProfileUpdate(account, key, context, [], identifiers)
        context["decided"] = decision.outcome.value
        profile = view(context, now, new_for=draft.ruleset.new_for)
        rendered = self.renderer.render(decision.block, decision.params, draft.event, profile)
        properties = build_properties(decision, rendered.outputs, now, block=rendered.block_id)
        digest = fingerprint(properties)
        writes = []
        for platform in draft.platforms:
            if not any(k in identifiers for k in PLATFORM_IDENTIFIERS.get(platform, ())):
                log.warning(
                    "profile %s cannot be addressed on %s: no usable identifier", key, platform
                )
                continue
            writes.append(
                PendingWrite(account, platform, key, identifiers, properties, fingerprint=digest)
            )
        self.on_decided(
            Decided(key, rendered.block_id, decision.rule_id, tuple(w.platform for w in writes))
        )
        return ProfileUpdate(account, key, context, writes, identifiers)


@dataclass
class _Draft:
    """One profile's batch, decided, before rendering (fetches may change it)."""

    account: str
    key: str
    context: dict[str, Any]
    event: Event
    ruleset: RuleSet
    platforms: tuple[str, ...]
    decision: Decision
    attempt: int  # which fetch attempt a retry item asked for (1: a first one)
    hold: bool = False  # the platform is down: keep the last block, write nothing


@dataclass(frozen=True, slots=True)
class _Item:
    event: Event | None  # None: decide again from the stored context (a replay)
    platforms: tuple[str, ...]
    fetched: Mapping[str, Any] | None = None  # fields read from a platform, late
    attempt: int = 1  # a fetch retry's attempt number
    linked: Mapping[str, str] | None = None  # identifiers a platform gave it (`LINK`)


def _writable(context: dict[str, Any], items: Sequence[_Item]) -> list[str]:
    """The platforms to write this batch's decision to, noting in `context[KNOWN_ON]` the
    platforms the profile is known on.

    A platform knows the profile when it sent us the profile's own id, or when a trusted
    source (the shop's server, a platform, a timer) sent an event for it, whose write
    creates the profile if missing. A browser's event is written only where the profile is
    already known: nobody can create a contact or profile from a browser.
    """
    ids = context.get("identifiers") or {}
    known = set(context.get(KNOWN_ON) or ())
    known |= {p for p, kind in PLATFORM_NATIVE_IDS.items() if kind in ids}
    known |= {p for item in items if not is_browser(item.event) for p in item.platforms}
    if known:
        context[KNOWN_ON] = sorted(known)
    return sorted({p for item in items for p in item.platforms if p in known})


def _time(event_json: Mapping[str, Any]) -> datetime:
    return parse_time(event_json["occurred_at"], "occurred_at")
