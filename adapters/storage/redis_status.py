"""What `RedisPipelineStore.status` reports: per-account figures and Redis's data safety.

`redis_health` reads `INFO persistence` and `INFO memory` (always available) and
`CONFIG GET appendfsync` (often disabled on managed Redis: then reported as unknown), and
warns when acknowledged events could be lost: persistence off, an fsync policy that
loses writes on a crash, or an eviction policy that may drop queue keys.
"""

from __future__ import annotations

from typing import Any, cast

from redis import Redis
from redis.exceptions import ResponseError

from adapters.storage import redis_constants as c
from adapters.storage.redis_keys import RedisKeys
from adapters.storage.redis_scripts import StoreScripts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_health(client: Redis) -> dict[str, Any]:
    """`{"redis": {appendonly, appendfsync, maxmemory_policy}, "warnings": [...]}`."""
    persistence = client.info("persistence")
    memory = client.info("memory")
    appendonly = int(persistence.get("aof_enabled", 0)) == 1
    policy = str(memory.get("maxmemory_policy", "unknown"))
    try:
        answer = cast(dict[str, Any], client.config_get("appendfsync"))
        fsync: str | None = _text(answer["appendfsync"])
    except (ResponseError, KeyError):  # CONFIG renamed or disabled
        fsync = None
    warnings = []
    if not appendonly:
        warnings.append(
            "Redis persistence is off (appendonly no): a Redis restart loses every queued "
            "event and pending write; set appendonly yes"
        )
    elif fsync == "everysec":
        warnings.append(
            "appendfsync everysec: a crash of the Redis host loses up to one second of "
            "acknowledged events; appendfsync always loses none"
        )
    elif fsync == "no":
        warnings.append(
            "appendfsync no: a crash of the Redis host loses the writes the OS had not "
            "flushed (up to about 30 s); appendfsync always loses none"
        )
    if policy != "noeviction":
        warnings.append(
            f"maxmemory-policy {policy} may evict queue and pending-write keys when Redis "
            "is full; set maxmemory-policy noeviction"
        )
    return {
        "redis": {"appendonly": appendonly, "appendfsync": fsync, "maxmemory_policy": policy},
        "warnings": warnings,
    }


def account_status(
    client: Redis, keys: RedisKeys, scripts: StoreScripts, now: float
) -> dict[str, dict[str, Any]]:
    """Queued events and the oldest one's age, pending writes, dead letters, per account.

    The oldest event is looked for in the first `STATUS_SCAN` entries; an account not among
    them reports the age of the last one read, an upper bound.
    """
    accounts: dict[str, dict[str, Any]] = {}
    oldest = _oldest_queued(client, keys)
    for account in sorted(_text(a) for a in cast(set[Any], client.smembers(keys.accounts))):
        queued = int(cast(bytes, client.get(keys.queued(account))) or 0)
        if queued > 0:
            at = oldest.get(account, oldest.get("", now))
            accounts[account] = {"queued": queued, "oldest_queued_seconds": round(now - at, 3)}
        for platform in sorted(
            _text(p) for p in cast(set[Any], client.smembers(keys.platforms(account)))
        ):
            count, first, retrying = scripts.pending_summary(
                [keys.due(account, platform)], [keys.pending(account, platform, "")]
            )
            if int(count) > 0:
                accounts.setdefault(account, {}).setdefault("pending", {})[platform] = {
                    "writes": int(count),
                    "lag_seconds": round(now - float(first), 3),
                    "retrying": int(retrying),
                }
    for account, count in _dead_letter_counts(client, keys).items():
        accounts.setdefault(account, {})["dead_letters"] = count
    return accounts


def _oldest_queued(client: Redis, keys: RedisKeys) -> dict[str, float]:
    """Enqueue time of each account's first entry among the first `STATUS_SCAN`; "" holds
    the last entry read."""
    found: dict[str, float] = {}
    rows = cast(list[Any], client.xrange(keys.events, "-", "+", count=c.STATUS_SCAN))
    for _, fields in rows:
        f = {_text(k): _text(v) for k, v in fields.items()}
        found.setdefault(f["a"], float(f["t"]))
        found[""] = float(f["t"])
    return found


def _dead_letter_counts(client: Redis, keys: RedisKeys) -> dict[str, int]:
    counts: dict[str, int] = {}
    start = "-"
    while True:
        rows = cast(list[Any], client.xrange(keys.dead_letters, start, "+", count=1000))
        for _, fields in rows:
            account = _text(fields[b"a"] if b"a" in fields else fields["a"])
            counts[account] = counts.get(account, 0) + 1
        if len(rows) < 1000:
            return counts
        start = "(" + _text(rows[-1][0])
