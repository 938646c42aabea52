"""`PullService`: a profile's current decision for the pull endpoint, through two caches.

A lookup resolves the URL's profile id to the profile (`store.resolve_profile`), reads its
context version (`store.context_version`, one cheap read), and looks for an entry made
from that version and the running rules version: first in this process's LRU (L1), then
in the shared layer (L2: Redis, or the embedded store's table). Only on a miss in both
does it load the context, decide and render, and store the result in both layers. So a
context change (a new cart, an order) makes exactly that profile's next lookup miss, in
every process, without purging anything; entries also expire after `ttl`, because rules
may depend on the time (`now.weekday`, `within`, validity).

The whole lookup runs within `budget` seconds: a store that is slow or down makes the
answer the fallback block (`decided: false`), never an error; the work left running
still fills the caches for the next request.

`open_pull` builds it with its layers from the settings, for the composition root.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from redis import Redis

from adapters.storage.decision_cache import (
    MemoryDecisionCache,
    RedisDecisionCache,
    RedisInvalidations,
    SqliteDecisionCache,
)
from adapters.storage.redis_keys import RedisKeys
from blocks.declarations import library_files, user_files
from blocks.loading import BlockLibrary
from connector.core.lookup import (
    CachedDecision,
    CurrentDecision,
    DecisionCache,
    PullError,
    PullResult,
    current_decision,
    fallback_decision,
    profile_identifiers,
)
from connector.core.processing import Renderer
from connector.core.rules import RuleSet
from connector.core.storage import PipelineStore
from connector.metrics import Metrics
from connector.rulesets import example_text
from connector.settings import Settings

log = logging.getLogger("dcb.pull")

#: Threads that run lookups under the budget: a lookup is a few store reads, or one
#: decision and render (about a millisecond), so a few threads keep up with many requests.
LOOKUP_THREADS = 8


@dataclass(frozen=True, slots=True)
class CacheObserver:
    """Metric hooks: `looked_up(layer, "hit" | "miss")` and, on a hit, `aged(layer, s)`."""

    looked_up: Callable[[str, str], None] = lambda _layer, _result: None
    aged: Callable[[str, float], None] = lambda _layer, _seconds: None


@dataclass
class PullService:
    """Looks up current decisions; thread-safe. `rules` names the accounts served."""

    store: PipelineStore
    rules: Mapping[str, tuple[RuleSet, str]]  # account -> its rule set and rules version
    renderer: Renderer
    l1: MemoryDecisionCache
    l2: DecisionCache
    clock: Callable[[], datetime]
    ttl: float = 300.0
    budget: float = 0.25
    observer: CacheObserver = field(default_factory=CacheObserver)
    on_first_use: Callable[[], None] = lambda: None  # e.g. start the invalidation listener
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(LOOKUP_THREADS, "dcb-pull")
    )
    _fallback: dict[str, CachedDecision] = field(default_factory=dict)  # by account

    def lookup(self, platform: str, account: str, profile_id: str) -> PullResult:
        """The current decision of the profile `profile_id` names on `platform`; raises
        `PullError` (404 unknown platform or account, 400 an unusable profile id). A
        lookup that fails or outlasts the budget answers the fallback block."""
        if account not in self.rules:
            raise PullError(404, f"unknown account {account!r}")
        identifiers = profile_identifiers(platform, profile_id)
        self.on_first_use()
        future = self._pool.submit(self._lookup, account, identifiers)
        try:
            return future.result(timeout=self.budget)
        except FutureTimeout:
            log.warning(
                "pull lookup over its %.0f ms budget: serving the fallback", self.budget * 1e3
            )
            reason = "the lookup took longer than its budget"
        except Exception as exc:  # a store outage must not fail the page that asked
            log.error("pull lookup failed, serving the fallback: %s", type(exc).__name__)
            reason = "the store is unavailable"
        return PullResult(self._fallback_for(account, reason), None, "fallback", cacheable=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _lookup(self, account: str, identifiers: dict[str, str]) -> PullResult:
        key = self.store.resolve_profile(account, identifiers)
        if key is None:
            return PullResult(self._fallback_for(account, "unknown profile"), None, "fallback")
        ruleset, rules_version = self.rules[account]
        version = self.store.context_version(account, key)
        now = self.clock()
        epoch = now.timestamp()
        for layer, cache in (("l1", self.l1), ("l2", self.l2)):
            entry = cache.get(account, key)
            if entry is not None and entry.serves(version, rules_version, epoch, self.ttl):
                self.observer.looked_up(layer, "hit")
                self.observer.aged(layer, max(0.0, epoch - entry.stored_at))
                if layer == "l2":
                    self.l1.put(account, key, entry)
                return PullResult(entry.decision, key, layer)
            self.observer.looked_up(layer, "miss")
        context = self.store.load_context(account, key)
        decision = current_decision(ruleset, self.renderer, context, now)
        entry = CachedDecision(version, rules_version, epoch, decision)
        self.l2.put(account, key, entry)
        self.l1.put(account, key, entry)
        return PullResult(decision, key, "decided")

    def _fallback_for(self, account: str, reason: str) -> CurrentDecision:
        """The account's fallback block for a profile the connector knows nothing of
        (rendered once per `ttl`: it depends on nothing but the rules and the time)."""
        ruleset, rules_version = self.rules[account]
        now = self.clock()
        cached = self._fallback.get(account)
        if cached is None or not cached.serves(0, rules_version, now.timestamp(), self.ttl):
            decision = fallback_decision(ruleset, self.renderer, now, reason)
            cached = self._fallback[account] = CachedDecision(
                0, rules_version, now.timestamp(), decision
            )
        decision = cached.decision
        if decision.reason == reason:
            return decision
        return CurrentDecision(
            False, decision.block, None, decision.variant, decision.properties, reason
        )


def rules_version(settings: Settings, ruleset: RuleSet) -> str:
    """The rule set's `version` and a digest of the rule set file and every block file, so
    an edit that forgets to raise `version` still makes every cached decision stale."""
    digest = hashlib.sha256()
    rules = settings.rules.read_text("utf-8") if settings.rules else example_text()
    files = library_files() + (user_files(settings.blocks_dir) if settings.blocks_dir else [])
    for source, text in [("rules", rules), *files]:
        digest.update(f"{source}\0{len(text)}\0{text}".encode())
    return f"{ruleset.version}-{digest.hexdigest()[:16]}"


@dataclass
class Pull:
    """The pull endpoint's service, with what sweeps and releases its layers."""

    service: PullService
    expire: Callable[[float], int] = lambda _before: 0  # drop L2 entries stored before
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        self.service.close()
        for close in self.closers:
            close()


def open_pull(
    settings: Settings,
    store: PipelineStore,
    redis: Redis | None,
    keys: RedisKeys,
    store_file: Path,
    library: BlockLibrary,
    rulesets: Mapping[str, tuple[RuleSet, Settings]],
    metrics: Metrics,
    clock: Callable[[], datetime],
) -> Pull:
    """The decision lookup behind `GET /v1/blocks/...` (for the composition root): L1 in
    this process, L2 in `redis` (with pub/sub eviction hints, listened to from the first
    lookup on) or the embedded store's `store_file`. `rulesets` holds each account's rule
    set and the settings it was read with."""
    ttl = settings.pull_cache_ttl.total_seconds()
    l1 = MemoryDecisionCache(settings.pull_cache_size)
    l2: RedisDecisionCache | SqliteDecisionCache
    if redis is not None:
        l2 = RedisDecisionCache(redis, keys, ttl)
        hints = RedisInvalidations(redis, keys, lambda a, k, v: l1.evict(a, k, older_than=v))
        start, closers = hints.ensure_started, [hints.stop]
    else:
        l2 = SqliteDecisionCache(store_file)
        start, closers = (lambda: None), [l2.close]
    rules = {
        account: (ruleset, rules_version(own, ruleset))
        for account, (ruleset, own) in rulesets.items()
    }
    service = PullService(
        store,
        rules,
        library.renderer,
        l1,
        l2,
        clock,
        ttl=ttl,
        budget=settings.pull_budget_ms / 1000,
        observer=CacheObserver(metrics.cache_looked_up, metrics.cache_entry_aged),
        on_first_use=start,
    )
    if isinstance(l2, SqliteDecisionCache):
        return Pull(service, l2.expire, closers)
    return Pull(service, closers=closers)  # Redis drops entries by their own TTL
