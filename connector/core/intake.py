"""From a parsed body to durably queued work, and the answer the sender gets.

`Intake.accept` queues a `ParseResult`'s events and erase requests for one account and
returns a `Receipt`: 202 with counts when something new was queued, 200 when everything
was a duplicate, 400 when a first-party body held no valid event. Raises `Backpressure`
from the store when the queue is full. `parse_first_party` reads the first-party event
API's body: one canonical event or a list of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.core.events import EventError, parse_event
from connector.core.inbound import Malformed, ParseError, ParseResult, load_json
from connector.core.storage import Inbound, PipelineStore

#: The most events one first-party request may carry.
MAX_FIRST_PARTY_EVENTS = 1000
#: The queued item that erases a profile (a platform's deletion or privacy request).
ERASE = "erase"
#: The queued item that decides a profile again from its stored context (a replay).
REDECIDE = "redecide"
#: With REDECIDE: identifiers a platform gave the profile when it was written (its record
#: id), added to the profile's before it is decided again.
LINK = "link"


@dataclass(frozen=True, slots=True)
class Receipt:
    """The status code and JSON body to answer with."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Routed:
    """A parsed body's share for one account, and the platforms to decide it for."""

    account: str
    platforms: tuple[str, ...]
    result: ParseResult


@dataclass
class Intake:
    store: PipelineStore
    clock: Callable[[], datetime]

    def accept(
        self,
        account: str,
        platforms: tuple[str, ...],
        result: ParseResult,
        *,
        require_event: bool = False,
    ) -> Receipt:
        """Queue the result's events (for `platforms`) and erase requests."""
        return self.accept_routed([Routed(account, platforms, result)], require_event=require_event)

    def accept_routed(self, parts: Sequence[Routed], *, require_event: bool = False) -> Receipt:
        """Queue each part's events and erase requests for its account, in one enqueue."""
        items: list[Inbound] = []
        for part in parts:
            account, platforms, result = part.account, part.platforms, part.result
            items += [Inbound(account, e.event_id, e.to_json(), platforms) for e in result.events]
            items += [
                Inbound(account, f"erase:{r.dedup_key}",
                        {ERASE: r.profile.to_json(), "source": r.source}, platforms)
                for r in result.erasures
            ]  # fmt: skip
        summary: dict[str, Any] = {
            "dropped": sum(len(p.result.dropped) for p in parts),
            "rejected": sum(len(p.result.malformed) for p in parts),
            "reasons": [r for p in parts for r in _reasons(p.result)][:20],
        }
        if not items:
            if require_event:
                return Receipt(400, {"error": "no valid event in the body", **summary})
            return Receipt(202, {"accepted": 0, "duplicates": 0, **summary})
        queued = self.store.enqueue(items, self.clock().timestamp())
        body = {"accepted": queued.accepted, "duplicates": queued.duplicates, **summary}
        return Receipt(200 if queued.accepted == 0 else 202, body)


def _reasons(result: ParseResult) -> list[str]:
    reasons = [f"[{d.index}] dropped: {d.reason}" for d in result.dropped]
    reasons += [_malformed(m) for m in result.malformed]
    return reasons[:20]


def _malformed(item: Malformed) -> str:
    where = f"{item.field}: " if item.field else ""
    return f"[{item.index}] rejected: {where}{item.reason}"


def parse_first_party(body: bytes, *, received_at: datetime) -> ParseResult:
    """One canonical event or a list of them; raises `ParseError` for a body that is
    neither. Each invalid event is a `Malformed` item naming its field."""
    data = load_json(body)
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, list | dict):
        raise ParseError("", "expected an event object or a list of events")
    if len(items) > MAX_FIRST_PARTY_EVENTS:
        raise ParseError("", f"{len(items)} events, at most {MAX_FIRST_PARTY_EVENTS} per request")
    outcomes: list[Any] = []
    for index, raw in enumerate(items):
        try:
            outcomes.append(parse_event(raw, received_at=received_at, source="api"))
        except EventError as exc:
            outcomes.append(Malformed(index, exc.field, exc.message))
    return ParseResult.collect(outcomes)
