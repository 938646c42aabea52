"""What parsing one inbound webhook body produces.

A platform parser turns one raw body into a `ParseResult`: the valid `Event`s, the
`EraseRequest`s (a platform asked us to forget a profile), the items `Dropped` on purpose
(not our business: an unknown subscription type, an echo of our own write) and the items
that are `Malformed` (ours, but wrong). A body that is not JSON, or not of the platform's
shape at all, raises one `ParseError` instead.

Exceptions::

    ValueError
    └── ParseError      the whole body is unusable; `field` names what is wrong

Pure data: no clock, no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.core.events import Event, ProfileRef

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A last line of defence only: the web layer caps each route lower (8 MiB at most)."""


class ParseError(ValueError):
    """A body is not JSON or not the platform's shape; `field` is the dotted path at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class EraseRequest:
    """A platform asked us to erase everything we hold on a profile.

    `dedup_key` survives platform retries like an event's `event_id`; `account_id` is the
    platform account the request came from when the body names it (HubSpot's `portalId`).
    """

    profile: ProfileRef
    source: str
    dedup_key: str
    occurred_at: datetime
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Dropped:
    """An item ignored on purpose; `index` is its position in the body (0 for one object)."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """An item that should have been an event but is invalid; `field` names the culprit."""

    index: int
    field: str
    reason: str


InboundItem = Event | EraseRequest | Dropped | Malformed


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Everything one body turned into, each kind in body order."""

    events: tuple[Event, ...] = ()
    erasures: tuple[EraseRequest, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    malformed: tuple[Malformed, ...] = ()

    @classmethod
    def collect(cls, items: Iterable[InboundItem]) -> ParseResult:
        """Sort per-item outcomes into one result, keeping their order."""
        events: list[Event] = []
        erasures: list[EraseRequest] = []
        dropped: list[Dropped] = []
        malformed: list[Malformed] = []
        for item in items:
            if isinstance(item, Event):
                events.append(item)
            elif isinstance(item, EraseRequest):
                erasures.append(item)
            elif isinstance(item, Dropped):
                dropped.append(item)
            else:
                malformed.append(item)
        return cls(tuple(events), tuple(erasures), tuple(dropped), tuple(malformed))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:20]} is out of range")
    return number


def load_json(body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """Decode a raw body as strict JSON (UTF-8/16/32; every number finite).

    Raises `ParseError` for a body over `max_bytes`, one that is not JSON, or one nested
    too deeply to decode.
    """
    if len(body) > max_bytes:
        raise ParseError("", f"body is {len(body)} bytes, more than {max_bytes}")
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise ParseError("", "body is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ParseError("", f"body is not JSON ({_first_line(exc)})") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def kind_of(value: Any) -> str:
    """What JSON type a value is, for error messages that must not echo personal data."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "an array", dict: "an object"}  # fmt: skip
    return names.get(type(value), type(value).__name__)
