"""Turns queued events into decided, rendered property sets waiting for delivery.

`Processor.run_once` claims a batch of events, folds each into its profile's context in
order, decides once per profile with the profile's newest event (so a late, older event
updates the context but never brings back an older decision), renders the block, and
commits contexts, pending writes and the settled events in one step. A property set equal
to the one last written (ignoring `dcb_computed_at`) is not queued again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from connector.core.abandonment import DEFAULT_ABANDON_AFTER, Arm, Disarm, timer_for
from connector.core.context import fold, view
from connector.core.events import Event, EventError, parse_event, parse_time
from connector.core.intake import ERASE, REDECIDE
from connector.core.properties import build_properties, fingerprint
from connector.core.rules import RuleSet, decide
from connector.core.storage import Claimed, PendingWrite, PipelineStore, ProfileUpdate, Timer

log = logging.getLogger(__name__)

#: The identifiers each platform can address a profile by, in the order it prefers them.
PLATFORM_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "hubspot": ("hubspot_id", "email"),
    "klaviyo": ("klaviyo_id", "email", "external_id"),
}


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
        found = [
            self._update(account, key, items, now) for (account, key), items in batches.items()
        ]
        updates = [u for u in found if u is not None]
        self.store.commit(updates, [c.id for c in claimed], now.timestamp())

    def _erase(self, item: Claimed, now: datetime) -> None:
        """Forget the profile the erase request names (idempotent, so a rerun is harmless)."""
        ids = {str(k): str(v) for k, v in dict(item.event[ERASE]).items()}
        key = self.store.resolve_profile(item.account, ids)
        if key is not None:
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
            if REDECIDE in item.event:
                event = None
                ids = tuple((str(k), str(v)) for k, v in dict(item.event[REDECIDE]).items())
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
            groups.setdefault((item.account, key), []).append(_Item(event, item.platforms))
        return groups

    def _update(
        self, account: str, key: str, items: list[_Item], now: datetime
    ) -> ProfileUpdate | None:
        """Fold the profile's events, decide, and say what to write; None when there is
        nothing to decide on (a replay for a profile erased since)."""
        context: dict[str, Any] = self.store.load_context(account, key) or {}
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
        platforms = sorted({p for item in items for p in item.platforms})
        self._rearm(account, key, events, context, tuple(platforms), ruleset)
        event = parse_event(context["last_event"], received_at=now)
        decision = decide(ruleset, event, context, now)
        profile = view(context, now, new_for=ruleset.new_for)
        rendered = self.renderer.render(decision.block, decision.params, event, profile)
        properties = build_properties(decision, rendered.outputs, now, block=rendered.block_id)
        identifiers: dict[str, str] = dict(context.get("identifiers") or {})
        digest = fingerprint(properties)
        writes = []
        for platform in platforms:
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


@dataclass(frozen=True, slots=True)
class _Item:
    event: Event | None  # None: decide again from the stored context (a replay)
    platforms: tuple[str, ...]


def _time(event_json: Mapping[str, Any]) -> datetime:
    return parse_time(event_json["occurred_at"], "occurred_at")
