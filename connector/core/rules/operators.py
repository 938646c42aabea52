"""The comparison operators: how each checks its expected value and tests an actual one.

A comparison never raises: a value of the wrong kind simply does not match. A missing
value matches only `exists: false` (handled by the evaluator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from connector.core.durations import parse_duration
from connector.core.events import parse_time


class OperandError(ValueError):
    """An operator was given an expected value it cannot use."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise OperandError(f"expected a single value, got {value!r}")
    return value


def _ordered(value: Any) -> Any:
    if not (_is_number(value) or isinstance(value, str)):
        raise OperandError(f"expected a number or a string, got {value!r}")
    return value


def _list(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise OperandError(f"expected a list, got {value!r}")
    return tuple(_scalar(v) for v in value)


def _pair(value: Any) -> tuple[Any, Any]:
    items = _list(value)
    if len(items) != 2:
        raise OperandError(f"expected a list of two bounds [low, high], got {value!r}")
    low, high = (_ordered(v) for v in items)
    if _is_number(low) != _is_number(high):
        raise OperandError(f"both bounds must be numbers or both strings, got {value!r}")
    return low, high


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise OperandError(f"expected true or false, got {value!r}")
    return value


def _duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise OperandError(str(exc)) from None


def _same_kind(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return bool(actual == expected)


def _compare(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any, datetime], bool]:
    return lambda actual, expected, _now: _same_kind(actual, expected) and test(actual, expected)


def _contains(actual: Any, expected: Any, _now: datetime) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, Sequence):
        return any(
            _equal(item, expected)
            or (isinstance(item, Mapping) and any(_equal(v, expected) for v in item.values()))
            for item in actual
        )
    return False


def _between(actual: Any, bounds: tuple[Any, Any], _now: datetime) -> bool:
    low, high = bounds
    return _same_kind(actual, low) and bool(low <= actual <= high)


def _within(actual: Any, window: timedelta, now: datetime) -> bool:
    try:
        moment = actual if isinstance(actual, datetime) else parse_time(actual, "value")
    except ValueError:
        return False
    return now - moment <= window  # a future time is not older than anything


#: op -> (check the expected value at load time, test an actual value at evaluation)
OPERATORS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any, datetime], bool]]] = {
    "eq": (_scalar, lambda a, e, _n: _equal(a, e)),
    "ne": (_scalar, lambda a, e, _n: not _equal(a, e)),
    "gt": (_ordered, _compare(lambda a, e: a > e)),
    "gte": (_ordered, _compare(lambda a, e: a >= e)),
    "lt": (_ordered, _compare(lambda a, e: a < e)),
    "lte": (_ordered, _compare(lambda a, e: a <= e)),
    "in": (_list, lambda a, e, _n: any(_equal(a, x) for x in e)),
    "not_in": (_list, lambda a, e, _n: not any(_equal(a, x) for x in e)),
    "contains": (_scalar, _contains),
    "exists": (_flag, lambda _a, e, _n: bool(e)),
    "between": (_pair, _between),
    "within": (_duration, _within),
}

#: The operators whose expected value may be another field, `{field: event.product_id}`.
REFERENCE_OPERATORS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "contains"})
