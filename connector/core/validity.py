"""Re-checks a decided write just before it goes out: a block whose content stopped being
true (its `valid_while` no longer holds for the profile now) is not sent; the profile is
decided again instead, and the rules skip a block that is no longer valid.

Every event already re-decides its profile at once, so what this catches is content that
expires while a write waits (a rate-limit pause, a dead letter replayed later).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from connector.core.events import parse_event
from connector.core.intake import REDECIDE
from connector.core.rules import RuleSet, still_valid
from connector.core.storage import Inbound, PendingWrite, PipelineStore


@dataclass
class Revalidation:
    store: PipelineStore
    ruleset_for: Callable[[str], RuleSet]
    clock: Callable[[], datetime]

    def still_valid(self, write: PendingWrite) -> bool:
        """Whether the write's block still holds for the profile's stored context now."""
        ruleset = self.ruleset_for(write.account)
        block = write.properties.get("dcb_block", "")
        if ruleset.validity(block) is None:
            return True
        context = self.store.load_context(write.account, write.profile_key)
        if not context or "last_event" not in context:
            return True
        now = self.clock()
        event = parse_event(context["last_event"], received_at=now)
        return still_valid(ruleset, block, event, context, now)

    def redecide(self, writes: Sequence[PendingWrite]) -> None:
        """Queue a fresh decision for each write's profile, on the write's platform."""
        items = [
            Inbound(
                w.account,
                f"revalidate:{uuid.uuid4().hex}",
                {REDECIDE: dict(w.identifiers)},
                (w.platform,),
            )
            for w in writes
        ]
        self.store.enqueue(items, self.clock().timestamp())
