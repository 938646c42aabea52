"""The fault test at CI size; `bench/chaos.py` runs the full 10,000 events."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.chaos.harness import EVENTS_KEY, ChaosHubSpot, Server, free_port, run, server_env


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


def test_scaled_out_on_redis_through_worker_kills_and_a_redis_restart(tmp_path: Path) -> None:
    report = run(events=1500, profiles=150, tmp=tmp_path, kills=4, scaled=True)
    print("\n".join(report.lines()))
    assert (report.kills, report.redis_restarts) == (3, 1)
    assert report.missing == []
    assert report.mismatched == []
    assert all(s <= 30 for s in report.redelivery_seconds), report.redelivery_seconds
    assert report.repeated_writes <= (report.kills + 1) * 2 * 100


def test_sigterm_drains_what_was_acknowledged(tmp_path: Path) -> None:
    hubspot = ChaosHubSpot(seed=1)
    hubspot.throttle_share = hubspot.error_share = 0.0
    hubspot.define_dcb_properties()
    # A long flush interval: nothing leaves on its own before the SIGTERM.
    env = server_env(tmp_path, hubspot, DCB_FLUSH_MS="5000")
    server = Server(free_port(), env, tmp_path / "server.log")
    server.start()
    try:
        session = requests.Session()
        for i in range(50):
            body = {
                "type": "cart_updated",
                "event_id": f"d{i}",
                "profile": {"email": f"drain{i}@example.com"},
                "properties": {"cart_value": 10},
            }
            response = session.post(
                f"http://127.0.0.1:{server.port}/v1/events",
                json=body,
                headers={"Authorization": f"Bearer {EVENTS_KEY}"},
            )
            assert response.status_code == 202
    finally:
        server.terminate()
    assert server.process is not None and server.process.returncode == 0
    assert all(hubspot.by_email(f"drain{i}@example.com") for i in range(50))
    hubspot.close()
