"""Who may not call the platform until when, after it answered 429.

A pause covers one scope: `ACCOUNT_SCOPE` (every call to the account, as a HubSpot 429
does) or one endpoint (as a Klaviyo 429 does). A pause only ever grows: a shorter one
recorded later does not shorten it. The clock is injected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from connector.core.ports import ACCOUNT_SCOPE

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Pause:
    scope: str
    until: float
    reason: str


class PauseBook(Protocol):
    """Who may not call until when: `Pauses` in one process, a Redis one shared by all."""

    def pause(self, scope: str, seconds: float, reason: str = "") -> None: ...

    def remaining(self, scopes: Iterable[str] = ()) -> float: ...

    def active(self) -> list[Pause]: ...


class Pauses:
    """`PauseBook` in one process's memory."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, Pause] = {}
        self._lock = threading.Lock()

    def pause(self, scope: str, seconds: float, reason: str = "") -> None:
        """Keep `scope` (and, for `ACCOUNT_SCOPE`, everything) quiet for `seconds` from now."""
        until = self._clock() + max(0.0, seconds)
        with self._lock:
            current = self._until.get(scope)
            if current is None or current.until < until:
                self._until[scope] = Pause(scope, until, reason)

    def remaining(self, scopes: Iterable[str] = ()) -> float:
        """Seconds until neither the account nor any of `scopes` is paused (0.0: go)."""
        now = self._clock()
        wanted = {ACCOUNT_SCOPE, *scopes}
        with self._lock:
            ends = [p.until for scope, p in self._until.items() if scope in wanted]
        return max([0.0, *(end - now for end in ends)])

    def active(self) -> list[Pause]:
        """Pauses still running, for status pages (a daily-limit pause says so in `reason`)."""
        now = self._clock()
        with self._lock:
            return [p for p in self._until.values() if p.until > now]
