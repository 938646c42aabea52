from __future__ import annotations

from connector.core.pauses import Pauses
from connector.runtime_report import RuntimeReport

T = 1_800_000_000.0


def test_the_report_holds_running_pauses_and_the_last_error() -> None:
    pauses = Pauses(lambda: T)
    pauses.pause("*", 30, "429 DAILY limit reached")
    report = RuntimeReport("default", {"hubspot": pauses, "klaviyo": Pauses(lambda: T)}, lambda: T)
    snapshot = report.snapshot()
    assert list(snapshot["paused"]) == ["hubspot"]
    assert "429 DAILY limit reached" in snapshot["paused"]["hubspot"]
    assert snapshot["last_errors"] == {}
    assert (snapshot["account"], snapshot["reported_at"]) == ("default", T)
