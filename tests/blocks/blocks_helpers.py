"""Shared builders for the block tests: events, profiles and a library loaded once."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from functools import cache
from typing import Any

from blocks.declarations import library_files
from blocks.loading import BlockLibrary, library_from_files, load_library
from connector.core.events import Event, parse_event
from tests.examples import checkout

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

CHECKOUT: dict[str, Any] = checkout()


def event(data: dict[str, Any] | None = None, **properties: Any) -> Event:
    """The checkout event above (or `data`), with `properties` overriding its properties."""
    raw = copy.deepcopy(data if data is not None else CHECKOUT)
    raw.setdefault("properties", {}).update(properties)
    return parse_event(raw, received_at=NOW)


def bare_event(event_type: str = "session_started") -> Event:
    """An event that carries nothing but its type and a profile."""
    return parse_event({"type": event_type, "profile": {"email": "a@b.c"}}, received_at=NOW)


@cache
def shipped() -> BlockLibrary:
    """The shipped library, loaded once for the whole run."""
    return load_library()


def with_block(text: str, **options: Any) -> BlockLibrary:
    """The shipped library plus one user block file `user/x.yaml` holding `text`."""
    return library_from_files(library_files() + [("user/x.yaml", text)], **options)


def headline_block(template: str, params: str = "") -> str:
    """A block file `x` whose headline is `template` (written as a YAML literal block)."""
    body = "\n".join("    " + line for line in template.splitlines())
    return f"id: x\n{params}outputs:\n  headline: |-\n{body}\n"
