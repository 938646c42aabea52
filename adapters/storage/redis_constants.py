"""The Redis store's constants, each with the reason for its value."""

from __future__ import annotations

from connector.core.storage import DEDUP_TTL

#: How long a consumer may go without calling `claim` before the others treat it as dead
#: and put its held events back in line. A live worker claims every 50 ms when idle and
#: settles a batch of 500 events in one or two seconds, so 15 s is many times the longest
#: healthy gap, while a SIGKILLed worker's events move on within 15 s plus one poll,
#: inside the 30 s the issue allows. A worker stalled longer than this loses its batch:
#: its `commit` raises `ClaimLost` and the events are processed once, by the next owner.
MIN_IDLE_SECONDS = 15.0
#: The consumer that holds events waiting for a lock; never treated as dead.
PARKING_CONSUMER = "dcb-waiting"
#: How many waiting events one claim looks at. Waiting events are few (only those whose
#: profile is being processed elsewhere); when more wait, the claim takes no new events
#: until the backlog shrinks, so none overtakes an older one of its profile.
WAITING_SCAN = 2000
#: Seconds one store instance keeps the right to dispatch an account's writes to a
#: platform after its last `take_due` or `mark_sending`. Longer than one delivery call
#: with its retries (a platform call times out after 10 s), so a live dispatcher never
#: loses it mid-call; a dead one's writes are sent by another instance after a minute.
DISPATCH_LEASE_SECONDS = 60.0
#: Dedup keys expire through Redis's own TTL (`SET NX EX`), so nothing needs sweeping.
DEDUP_TTL_SECONDS = int(DEDUP_TTL.total_seconds())
#: How many queue entries `status` reads to find each account's oldest event.
STATUS_SCAN = 1000
#: How many due writes `oldest_due` looks at; the dispatcher asks only when fewer than
#: one batch (at most a few hundred) are due.
OLDEST_DUE_SCAN = 1000
