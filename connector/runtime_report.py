"""What only the running process knows, published for `dcb status` and other processes:
each platform's rate-limit pauses and the last error a write met."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connector.core.pauses import PauseBook
from connector.core.storage import Settlement


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class RuntimeReport:
    """Collects last errors from settled writes; `snapshot` adds the pauses running now."""

    def __init__(self, account: str, pauses: Mapping[str, PauseBook], epoch: Callable[[], float]):
        self._account = account
        self._pauses = dict(pauses)
        self._epoch = epoch
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def settled(self, settlements: Sequence[Settlement]) -> None:
        for s in settlements:
            if s.status in ("retry", "fatal"):
                with self._lock:
                    self._errors[s.write.platform] = (
                        f"{s.reason} ({s.status}, {_when(self._epoch())})"
                    )

    def snapshot(self) -> dict[str, Any]:
        paused = {
            platform: "; ".join(f"{p.scope} until {_when(p.until)}: {p.reason}" for p in active)
            for platform, book in self._pauses.items()
            if (active := book.active())
        }
        with self._lock:
            errors = dict(self._errors)
        return {
            "account": self._account,
            "reported_at": self._epoch(),
            "paused": paused,
            "last_errors": errors,
        }
