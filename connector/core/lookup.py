"""A profile's current decision, as the pull endpoint serves it, and the caches behind it.

`current_decision(ruleset, renderer, context, now)` decides from a stored context the way
the `Processor` does (the newest event, the profile's view at `now`), renders the block and
builds the full `dcb_*` property set; with no context it is the rule set's fallback block,
marked `decided=False`. It is pure: the same inputs give the same decision.

`profile_identifiers(platform, profile_id)` reads how a URL names a profile:

- `email:ada@example.com`, `external_id:u-42`, `klaviyo_id:01H...`, `hubspot_id:51`: an
  explicit kind (one the platform addresses profiles by, `PLATFORM_IDENTIFIERS`);
- a value with an `@`: an email (lower-cased, as events store it);
- anything else: the platform's own id (`hubspot_id` for HubSpot, `klaviyo_id` for Klaviyo).

A decision cache (`DecisionCache`) holds one `CachedDecision` per (account, profile),
tagged with the profile's context version and the rules version it was made under; a
reader compares both with the current ones (and the entry's age with a TTL, for rules
that depend on the time), so a changed context is a miss without purging anything.

Errors: `PullError`, with the HTTP status the edge answers (`404` unknown platform or
account, `400` a profile id that cannot name a profile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.core.context import view
from connector.core.decisions import Decision, Outcome
from connector.core.events import (
    IDENTIFIER_KINDS,
    PLATFORM_IDENTIFIERS,
    PLATFORM_NATIVE_IDS,
    parse_event,
)
from connector.core.processing import Renderer
from connector.core.properties import build_properties
from connector.core.rules import RuleSet, decide

#: The id a platform's own URLs carry when no kind is given.
NATIVE_IDENTIFIER = PLATFORM_NATIVE_IDS
#: Longest profile id accepted in a URL (an email is at most 254 characters).
MAX_PROFILE_ID = 320


class PullError(ValueError):
    """A pull request that cannot be answered; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class CurrentDecision:
    """What a profile should see now. `decided` is False when this is the fallback block
    served without deciding (no context yet, or the lookup ran out of time); `reason`
    says why."""

    decided: bool
    block: str
    rule_id: str | None
    variant: str
    properties: Mapping[str, str]
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "decided": self.decided,
            "block": self.block,
            "rule": self.rule_id,
            "variant": self.variant,
            "properties": dict(self.properties),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CurrentDecision:
        """The decision `to_json` gave; raises `KeyError` or `TypeError` for anything else."""
        return cls(
            bool(data["decided"]),
            str(data["block"]),
            None if data["rule"] is None else str(data["rule"]),
            str(data["variant"]),
            {str(k): str(v) for k, v in dict(data["properties"]).items()},
            str(data.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class CachedDecision:
    """A cached decision and what it was made from."""

    context_version: int
    rules_version: str
    stored_at: float  # epoch seconds
    decision: CurrentDecision = field(compare=False)

    def serves(self, context_version: int, rules_version: str, now: float, ttl: float) -> bool:
        """Whether this entry is the decision for these versions, young enough to reuse."""
        return (
            self.context_version == context_version
            and self.rules_version == rules_version
            and 0 <= now - self.stored_at < ttl
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cv": self.context_version,
            "rv": self.rules_version,
            "at": self.stored_at,
            "d": self.decision.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CachedDecision:
        """The entry `to_json` gave; raises `KeyError`, `TypeError` or `ValueError`."""
        return cls(
            int(data["cv"]),
            str(data["rv"]),
            float(data["at"]),
            CurrentDecision.from_json(data["d"]),
        )


@dataclass(frozen=True, slots=True)
class PullResult:
    """A lookup's answer: the decision, the profile it is for (None: unknown profile),
    where it came from (`l1`, `l2`, `decided` on a miss, `fallback`), and whether a client
    may cache it (not when a failure made it the fallback)."""

    decision: CurrentDecision
    profile_key: str | None
    source: str
    cacheable: bool = True


class DecisionCache(Protocol):
    """One cache layer: at most one entry per (account, profile). Failures are the
    layer's own business: `get` answers None and `put` does nothing rather than raise."""

    def get(self, account: str, profile_key: str) -> CachedDecision | None: ...

    def put(self, account: str, profile_key: str, entry: CachedDecision) -> None: ...


def profile_identifiers(platform: str, profile_id: str) -> dict[str, str]:
    """The identifier a URL's profile id names on `platform` (see the module docstring);
    raises `PullError` (404 for an unknown platform, 400 for an unusable id)."""
    kinds = PLATFORM_IDENTIFIERS.get(platform)
    if kinds is None:
        known = ", ".join(sorted(PLATFORM_IDENTIFIERS))
        raise PullError(404, f"unknown platform {platform!r} (one of {known})")
    value = profile_id.strip()
    if not value or len(value) > MAX_PROFILE_ID:
        raise PullError(400, f"the profile id must be 1 to {MAX_PROFILE_ID} characters")
    kind, sep, rest = value.partition(":")
    if sep and kind in IDENTIFIER_KINDS:
        if kind not in kinds:
            raise PullError(400, f"{platform} does not address profiles by {kind}")
        value = rest.strip()
        if not value:
            raise PullError(400, f"the profile id {kind}: has no value")
    elif "@" in value:
        kind = "email"
    else:
        kind = NATIVE_IDENTIFIER[platform]
    return {kind: value.lower() if kind == "email" else value}


def current_decision(
    ruleset: RuleSet, renderer: Renderer, context: Mapping[str, Any] | None, now: datetime
) -> CurrentDecision:
    """Decide and render for a stored context (None or without an event: the fallback)."""
    if not context or "last_event" not in context:
        return fallback_decision(ruleset, renderer, now, "no context for this profile yet")
    event = parse_event(context["last_event"], received_at=now)
    decision = decide(ruleset, event, context, now)
    profile = view(context, now, new_for=ruleset.new_for)
    rendered = renderer.render(decision.block, decision.params, event, profile)
    properties = build_properties(decision, rendered.outputs, now, block=rendered.block_id)
    return CurrentDecision(
        True, rendered.block_id, decision.rule_id, decision.variant.value, properties
    )


def fallback_decision(
    ruleset: RuleSet, renderer: Renderer, now: datetime, reason: str
) -> CurrentDecision:
    """The rule set's fallback block with nothing known of the profile, `decided=False`."""
    choice = ruleset.fallback
    decision = Decision(
        Outcome.FALLBACK, choice.block, choice.params, None, ruleset.name, ruleset.version
    )
    rendered = renderer.render(choice.block, choice.params, None, {})
    properties = build_properties(decision, rendered.outputs, now, block=rendered.block_id)
    return CurrentDecision(
        False, rendered.block_id, None, decision.variant.value, properties, reason
    )
