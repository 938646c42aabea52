"""The connector's Prometheus metrics, on a registry of their own (one per service)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from connector.core.processing import Decided
from connector.core.storage import Settlement

#: Acknowledgement latencies are milliseconds; delivery latencies seconds to minutes.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
#: Ages of served cache entries: up to the longest sensible DCB_PULL_CACHE_TTL.
AGE_BUCKETS = (0.1, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


def enable_multiprocess(directory: str) -> None:
    """Keep metric values in `directory`, shared by every process of `dcb web` (gunicorn
    workers each count their own requests; a scrape of any one sums them all)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class _QueueDepth(Collector):
    """`dcb_queue_depth`, read from the store at every scrape: the queue is shared by every
    process, so no process's last-set value would be right."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "dcb_queue_depth", "Events waiting to be processed", value=self._depth()
        )


class Metrics:
    def __init__(
        self, depth: Callable[[], int] = lambda: 0, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dcb_requests", "Inbound requests answered", ["endpoint", "status"], registry=r
        )
        self.ack_seconds = Histogram(
            "dcb_ack_seconds",
            "Time to acknowledge an inbound request",
            ["endpoint"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.decisions = Counter("dcb_decisions", "Decisions made, by block", ["block"], registry=r)
        self.writes = Counter(
            "dcb_writes", "Pending writes settled", ["platform", "status"], registry=r
        )
        self.write_lag = Histogram(
            "dcb_write_lag_seconds",
            "From decision to settled write",
            ["platform"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.cache_lookups = Counter(
            "dcb_pull_cache_lookups",
            "Decision cache lookups of the pull endpoint, by layer (l1, l2) and result",
            ["layer", "result"],
            registry=r,
        )
        self.cache_entry_age = Histogram(
            "dcb_pull_cache_entry_age_seconds",
            "Age of the cached decisions served, by layer",
            ["layer"],
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self._depth = _QueueDepth(depth)
        r.register(self._depth)

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.ack_seconds.labels(endpoint).observe(seconds)

    def cache_looked_up(self, layer: str, result: str) -> None:
        self.cache_lookups.labels(layer, result).inc()

    def cache_entry_aged(self, layer: str, seconds: float) -> None:
        self.cache_entry_age.labels(layer).observe(seconds)

    def decided(self, outcome: Decided) -> None:
        self.decisions.labels(outcome.block).inc()

    def settled(self, settlements: Sequence[Settlement], now: float) -> None:
        for s in settlements:
            self.writes.labels(s.write.platform, s.status).inc()
            if s.status != "retry":
                self.write_lag.labels(s.write.platform).observe(
                    max(0.0, now - s.write.first_queued_at)
                )

    def exposition(self) -> tuple[bytes, str]:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._depth)
        return generate_latest(registry), CONTENT_TYPE_LATEST
