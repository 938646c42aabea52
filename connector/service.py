"""The running pipeline: processor loops and one dispatcher per platform, each on a thread.

`Service.start` reclaims whatever a killed process left in flight, then starts the
threads; `Service.stop` stops them, first draining (processing every queued event and
sending every pending write, within `drain_seconds`) when asked to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from connector.core.dispatch import Dispatcher
from connector.core.processing import Processor

log = logging.getLogger("dcb.service")

#: Longest a worker sleeps when idle; a wake-up (new events, new writes) cuts it short.
IDLE_SECONDS = 0.05
#: How often expired dedup keys are swept.
UPKEEP_SECONDS = 3600.0
#: How often due abandonment timers are looked for: a `cart_abandoned` event is queued at
#: most this late after its window ends.
TIMER_SECONDS = 0.25
#: How often a live process renews its dispatch leases: well inside the lease (60 s), so
#: only a dead process ever loses one, never a busy one.
HEARTBEAT_SECONDS = 10.0  # also how often `dcb status` learns of pauses and errors


@dataclass
class Service:
    app: Flask
    processors: Sequence[Processor]
    dispatchers: Sequence[Dispatcher]
    reclaim: Callable[[], int]
    upkeep: Callable[[], None]
    close: Callable[[], None]
    fire_timers: Callable[[], int] = lambda: 0
    publish: Callable[[], None] = lambda: None
    batch_size: int = 500
    _stopping: threading.Event = field(default_factory=threading.Event)
    _events_waiting: threading.Event = field(default_factory=threading.Event)
    _writes_waiting: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def events_arrived(self) -> None:
        """Wake the processor (called after an enqueue)."""
        self._events_waiting.set()

    def start(self) -> None:
        reclaimed = self.reclaim()
        if reclaimed:
            log.info("reclaimed %d events a previous run left in flight", reclaimed)
        for n, processor in enumerate(self.processors):
            self._spawn(f"dcb-processor-{n}", self._process, processor)
        if self.processors:
            self._spawn("dcb-timers", self._timers)
        for d in self.dispatchers:
            self._spawn(f"dcb-dispatch-{d.account}-{d.platform}", self._dispatch, d)
        self._spawn("dcb-upkeep", self._upkeep)
        if self.dispatchers:
            self._spawn("dcb-heartbeat", self._heartbeat)

    def stop(self, *, drain: bool = True, drain_seconds: float = 10.0) -> None:
        """Stop the workers; with `drain`, then finish queued events and pending writes here
        (one thread, so per-profile order holds), within `drain_seconds`."""
        deadline = time.monotonic() + drain_seconds
        self._stopping.set()
        self._events_waiting.set()
        self._writes_waiting.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        busy = [t.name for t in self._threads if t.is_alive()]
        if busy:  # e.g. a dispatcher waiting out a long Retry-After: leave the rest queued
            log.warning("not draining: %s still busy; the rest is sent after the next start", busy)
        elif drain:
            self._drain(deadline)
        self.close()

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(
            target=self._guarded, args=(name, target, *args), name=name, daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _guarded(self, name: str, target: Callable[..., None], *args: Any) -> None:
        """Run a worker loop; an unexpected error is logged and the loop restarts."""
        while not self._stopping.is_set():
            try:
                target(*args)
                return
            except Exception:
                log.exception("%s failed; restarting it in 1 s", name)
                self._stopping.wait(1.0)

    def _process(self, processor: Processor) -> None:
        while not self._stopping.is_set():
            if processor.run_once(self.batch_size):
                self._writes_waiting.set()
                continue
            self._events_waiting.wait(IDLE_SECONDS)
            self._events_waiting.clear()

    def _dispatch(self, dispatcher: Dispatcher) -> None:
        while not self._stopping.is_set():
            if dispatcher.run_once():
                continue
            wait = min(IDLE_SECONDS, dispatcher.waiting_for()) or 0.001
            self._writes_waiting.wait(wait)
            self._writes_waiting.clear()

    def _timers(self) -> None:
        while not self._stopping.wait(TIMER_SECONDS):
            if self.fire_timers():
                self._events_waiting.set()

    def _heartbeat(self) -> None:
        """Renew dispatch leases and publish the runtime report (pauses, last errors)."""
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            for d in self.dispatchers:
                d.store.keep_dispatching(d.account, d.platform)
            self.publish()

    def _upkeep(self) -> None:
        while not self._stopping.wait(UPKEEP_SECONDS):
            self.upkeep()

    def _drain(self, deadline: float) -> None:
        """Process and send everything, until nothing is left or the deadline passes."""
        while time.monotonic() < deadline:
            busy = sum(p.run_once(self.batch_size) for p in self.processors)
            sent = sum(d.run_once(drain=True) for d in self.dispatchers)
            if not busy and not sent:
                return
        log.warning("drain timed out; the rest is kept and sent after the next start")
