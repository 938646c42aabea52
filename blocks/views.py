"""What templates see: data as objects whose attributes are the data.

`event.items` must be the cart's items, not `dict.items`, so mappings are wrapped in
`DataView`, whose only attributes are its keys. Lists become tuples (immutable), times
become ISO 8601 text, `None` values are left out (a template sees them as undefined, which
renders as ""), and long strings are cut at `MAX_TEXT` characters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from connector.core.events import Event, format_time

#: Longest string a template sees from data; far beyond any real name, URL or note.
MAX_TEXT = 4_096
#: Most list entries a template sees; carts are far smaller.
MAX_LIST = 200
#: Deepest nesting wrapped; deeper data is left out.
MAX_DEPTH = 8


#: What `DataView.get` answers for a missing key.
MISSING = object()


class DataView:
    """Read-only attribute (and item) access to a mapping, wrapping each value when it is
    read (templates read a handful of fields, so nothing else is ever converted).

    A missing key, or one whose value is None, raises AttributeError / KeyError, which
    Jinja turns into undefined.
    """

    __slots__ = ("_data", "_depth")

    def __init__(self, data: Mapping[str, Any], depth: int = 0) -> None:
        self._data = data
        self._depth = depth

    def _wrapped(self, key: str) -> Any:
        """The wrapped value at `key`, or MISSING."""
        value = self._data.get(key, MISSING) if isinstance(key, str) else MISSING
        if value is MISSING or value is None:
            return MISSING
        inner = wrap(value, self._depth)
        return MISSING if inner is None else inner

    def __getattr__(self, name: str) -> Any:
        value = self._wrapped(name)
        if value is MISSING:
            raise AttributeError(name)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value at `key` or `default` (for the sandbox's fast path; templates see a
        key named `get` if the data has one, never this method)."""
        value = self._wrapped(key)
        return default if value is MISSING else value

    def __getitem__(self, key: str) -> Any:
        value = self._wrapped(key)
        if value is MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._wrapped(key) is not MISSING

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._data if isinstance(k, str) and self._wrapped(k) is not MISSING)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def __str__(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"DataView({sorted(self)!r})"


def wrap(value: Any, depth: int = 0) -> Any:
    """`value` as templates see it (see the module docstring)."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]
    if kind is int or kind is float or kind is bool:
        return value
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):
        return wrap(value.value, depth)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        return view(value, depth + 1)
    if isinstance(value, list | tuple):
        wrapped = (wrap(item, depth + 1) for item in value[:MAX_LIST])
        return tuple(item for item in wrapped if item is not None)
    return None if value is None else str(value)[:MAX_TEXT]


def view(data: Mapping[str, Any], depth: int = 0) -> DataView:
    """A `DataView` of `data`: values wrapped as they are read, `None` values left out."""
    return DataView(data, depth)


def event_view(event: Event | None) -> DataView:
    """`event.type`, `event.occurred_at` and every event property (the rules' namespace)."""
    if event is None:
        return DataView({})
    data: dict[str, Any] = dict(event.properties)
    data["type"] = event.type.value
    data["occurred_at"] = event.occurred_at
    return view(data)
