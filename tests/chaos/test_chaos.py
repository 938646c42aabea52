"""The fault test at CI size; `bench/chaos.py` runs the full 10,000 events."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.harness import run


def test_nothing_acknowledged_is_lost_through_kills_and_faults(tmp_path: Path) -> None:
    report = run(events=2000, profiles=200, tmp=tmp_path)
    print("\n".join(report.lines()))
    assert report.kills == 2
    assert report.duplicates_sent > 0 and report.malformed_sent > 0
    assert report.missing == []
    assert report.mismatched == []
    # Only a call in flight when the process was killed may be repeated: at most one batch
    # per platform per kill.
    assert report.repeated_writes <= report.kills * 2 * 100
