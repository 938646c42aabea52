"""Erasing one account from the Redis store (`dcb accounts remove`).

An account's own keys all start with `RedisKeys.account(account)` and go with one SCAN.
Three structures are shared by every account and are filtered entry by entry: the event
stream (with the consumer group's bookkeeping: pending entries, `held`, `waiting`,
`attempts`), the dead-letter stream and the timer index. An event a worker holds while
it is erased is gone from `held`, so that worker's commit raises `ClaimLost` and changes
nothing: no context of the erased account comes back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, cast

from redis import Redis

from adapters.storage.redis_keys import RedisKeys

#: Stream entries read per XRANGE while looking for the account's.
SCAN_BATCH = 1000
_GLOB = re.compile(r"([*?\[\]\\])")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries_of(client: Redis, stream: str, account: str) -> Iterator[str]:
    """Ids of the stream's entries whose `a` field is `account`, oldest first."""
    start = "-"
    while True:
        rows = cast(list[Any], client.xrange(stream, start, "+", count=SCAN_BATCH))
        for entry_id, fields in rows:
            if _text(fields.get(b"a", fields.get("a", ""))) == account:
                yield _text(entry_id)
        if len(rows) < SCAN_BATCH:
            return
        start = "(" + _text(rows[-1][0])


def erase_account(client: Redis, keys: RedisKeys, group: str, account: str) -> dict[str, int]:
    """Remove every trace of `account`; returns counts of what went."""
    events = list(_entries_of(client, keys.events, account))
    pipe = client.pipeline(transaction=False)
    for entry_id in events:
        pipe.xack(keys.events, group, entry_id)
        pipe.xdel(keys.events, entry_id)
        pipe.hdel(keys.held, entry_id)
        pipe.hdel(keys.attempts, entry_id)
        pipe.zrem(keys.waiting, entry_id)
    letters = list(_entries_of(client, keys.dead_letters, account))
    if letters:
        pipe.xdel(keys.dead_letters, *letters)
    own = keys.account(account) + ":"
    timers = [
        _text(m)
        for m in cast(list[Any], client.zrange(keys.timers, 0, -1))
        if _text(m).startswith(own)
    ]
    if timers:
        pipe.zrem(keys.timers, *timers)
    pipe.srem(keys.accounts, account)
    pipe.execute()
    counts = {"events": len(events), "profiles": 0, "pending": 0, "timers": len(timers),
              "dead_letters": len(letters)}  # fmt: skip
    pattern = _GLOB.sub(r"\\\1", own) + "*"
    doomed: list[str] = []
    for key in client.scan_iter(match=pattern, count=500):
        name = _text(key)[len(own) :]
        if name.startswith("context:"):
            counts["profiles"] += 1
        elif name.startswith("pending:"):
            counts["pending"] += 1
        doomed.append(_text(key))
        if len(doomed) >= SCAN_BATCH:
            client.unlink(*doomed)
            doomed = []
    if doomed:
        client.unlink(*doomed)
    return counts
