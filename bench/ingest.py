"""Ingest: how fast `dcb serve` acknowledges events, beside a bare Flask endpoint.

Runs, in one go on this machine:
1. a bare Flask endpoint answering 204 on the same WSGI server (waitress, same threads),
2. `dcb serve` taking single first-party events (`POST /v1/events`),
3. `dcb serve` taking signed HubSpot batches of 100 notifications,
4. `dcb serve` at a steady 200 requests/s, for the acknowledgement p99 at that rate,
5. end to end: events paced under the rate limit, from the request to the property at the
   fake HubSpot API (real SDK, real batching and rate limiting).

    python bench/ingest.py [--requests 3000] [--clients 8]

Load comes from threads in this process, so the client competes with the server for the
two cores; the bare endpoint pays the same cost, which is why the ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import Server  # noqa: E402
from tests.fakes.fake_hubspot import FakeHubSpotApi  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402
from webhooks.signatures import sign_hubspot_v3  # noqa: E402

KEY = "bench-key"
SECRET = "bench-secret"
PUBLIC = "https://hooks.bench.example"

BARE = """
import sys
from flask import Flask
from waitress import serve
app = Flask("bare")
@app.post("/v1/events")
def events():
    return "", 204
@app.get("/readyz")
def ready():
    return "ok"
serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
"""


class RecordingHubSpot(FakeHubSpotApi):
    """Notes when each contact's properties landed."""

    def __init__(self) -> None:
        super().__init__()
        self.landed: dict[str, float] = {}

    def _apply(self, item: dict[str, Any], upsert: bool) -> Any:
        contact, created = super()._apply(item, upsert)
        if contact is not None:
            self.landed.setdefault(str(item.get("id")), time.time())
        return contact, created


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def hammer(
    count: int, clients: int, send: Callable[[requests.Session, int], int]
) -> dict[str, float]:
    """`count` requests from `clients` threads as fast as answers come."""
    latencies: list[float] = []
    lock = threading.Lock()
    local = threading.local()

    def one(i: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        status = send(session, i)
        elapsed = time.perf_counter() - started
        assert status < 300, status
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    return {
        "rps": count / wall,
        "p50": percentile(latencies, 0.5) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


def paced(
    count: int, rate: float, send: Callable[[requests.Session, int], int]
) -> dict[str, float]:
    """`count` requests at a steady `rate` per second (8 sender threads)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    local = threading.local()

    def one(i: int) -> None:
        due = start + i / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        t0 = time.perf_counter()
        send(session, i)
        with lock:
            latencies.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    return {
        "rps": count / (time.perf_counter() - start),
        "p50": percentile(latencies, 0.5) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
    }


def drained(base: str, timeout: float = 120.0) -> None:
    """Wait until the connector's queue is empty, so one run's backlog does not slow the next."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = requests.get(base + "/metrics", timeout=5).text
        depth = next(
            (line.split()[-1] for line in text.splitlines() if line.startswith("dcb_queue_depth ")),
            "1",
        )
        if float(depth) == 0:
            time.sleep(1.0)  # the last writes leave after the flush interval
            return
        time.sleep(0.2)


def event_body(i: int, run: str) -> bytes:
    return json.dumps(
        {
            "type": "cart_updated",
            "event_id": f"{run}-{i}",
            "profile": {"email": f"{run}{i % 5000}@example.com"},
            "properties": {"cart_value": 20.0 + i % 300},
        }
    ).encode()


def hubspot_batch(i: int) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps(
        [
            {
                "objectId": 1000 + (i * 100 + j) % 5000,
                "eventId": i * 100 + j,
                "subscriptionId": 1,
                "portalId": 1,
                "appId": 1,
                "occurredAt": now,
                "subscriptionType": "contact.propertyChange",
                "propertyName": "cart_value",
                "propertyValue": str(j),
                "attemptNumber": 0,
            }
            for j in range(100)
        ]
    ).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description="ingest throughput and latency")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-redis", action="store_true", help="skip dcb web + workers on Redis")
    args = parser.parse_args()
    hubspot = RecordingHubSpot()
    hubspot.define_dcb_properties()
    rows: list[tuple[str, dict[str, float]]] = []
    end_to_end: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
        Server(bare_port, dict(os.environ), Path(tmp) / "bare.log").wait_ready()
        url = f"http://127.0.0.1:{bare_port}/v1/events"
        rows.append(
            (
                "bare Flask 204, single events",
                hammer(
                    args.requests,
                    args.clients,
                    lambda s, i: s.post(url, data=event_body(i, "bare")).status_code,
                ),
            )
        )
        bare.terminate()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DCB_")},
            "DCB_DATA_DIR": str(Path(tmp) / "data"),
            "DCB_EVENTS_API_KEY": KEY,
            "DCB_HUBSPOT_ACCESS_TOKEN": hubspot.token,
            "DCB_HUBSPOT_API_URL": hubspot.base_url,
            "DCB_HUBSPOT_CLIENT_SECRET": SECRET,
            "DCB_PUBLIC_URL": PUBLIC,
            "DCB_LOG_LEVEL": "WARNING",
        }
        server = Server(free_port(), env, Path(tmp) / "serve.log")
        server.start()
        rows += measure("dcb serve", server.port, hubspot, args, end_to_end)
        server.terminate()
        if not args.no_redis:
            redis = RedisServer(Path(tmp), durable=True)
            redis.start()
            scaled = {**env, "DCB_REDIS_URL": redis.url}
            web = Server(free_port(), scaled, Path(tmp) / "web.log", ("web", "--workers", "2"))
            workers = [
                Server(None, scaled, Path(tmp) / f"worker{n}.log", ("worker",)) for n in range(2)
            ]
            for process in (web, *workers):
                process.start()
            rows += measure("dcb web + 2 workers, Redis", web.port, hubspot, args, end_to_end)
            for process in (web, *workers):
                process.terminate()
            redis.stop()
    hubspot.close()
    bare_rps = rows[0][1]["rps"]
    print(f"{'run':58} {'req/s':>9} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}")
    for name, r in rows:
        print(
            f"{name:58} {r['rps']:9.0f} {r.get('events/s', r['rps']):9.0f} {r['p50']:8.2f} "
            f"{r['p99']:8.2f} {r['rps'] / bare_rps:8.2f}"
        )
    for label, e2e in end_to_end:
        print(
            f"{label}: end to end (request -> property at the fake HubSpot), {e2e['n']:.0f} "
            f"events at {e2e['rate']:.0f}/s: p50 {e2e['p50']:.1f} ms, p99 {e2e['p99']:.1f} ms"
        )
    return 0


def measure(
    label: str,
    port: int | None,
    hubspot: RecordingHubSpot,
    args: argparse.Namespace,
    end_to_end: list[tuple[str, dict[str, float]]],
) -> list[tuple[str, dict[str, float]]]:
    """Single events, signed batches, a steady 200 requests/s, and end to end, on one target."""
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    tag = label.split()[1]
    rows: list[tuple[str, dict[str, float]]] = []

    def single(session: requests.Session, i: int) -> int:
        body = event_body(i, f"{tag}-one")
        return session.post(base + "/v1/events", data=body, headers=auth).status_code

    def signed(session: requests.Session, i: int) -> int:
        body = hubspot_batch(i)
        ts = str(int(time.time() * 1000))
        sig = sign_hubspot_v3(SECRET, "POST", PUBLIC + "/webhooks/hubspot", body, ts)
        return session.post(
            base + "/webhooks/hubspot",
            data=body,
            headers={"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts},
        ).status_code

    def steady(session: requests.Session, i: int) -> int:
        body = event_body(i, f"{tag}-paced")
        return session.post(base + "/v1/events", data=body, headers=auth).status_code

    rows.append(
        (f"{label}, single first-party events", hammer(args.requests, args.clients, single))
    )
    drained(base)
    batches = hammer(max(50, args.requests // 20), args.clients, signed)
    batches["events/s"] = batches["rps"] * 100
    rows.append((f"{label}, signed HubSpot batches of 100", batches))
    drained(base)
    rows.append((f"{label} at 200 requests/s", paced(1000, 200.0, steady)))
    for rate in (8.0, 50.0):
        drained(base)
        time.sleep(10.0)  # the rate limit's rolling window forgets the previous runs
        e2e = measure_end_to_end(base, auth, hubspot, rate, 10.0, tag)
        end_to_end.append((label, e2e))
    return rows


def measure_end_to_end(
    base: str,
    auth: dict[str, str],
    hubspot: RecordingHubSpot,
    rate: float,
    seconds: float,
    tag: str,
) -> dict[str, float]:
    """Events for new profiles at `rate` per second for `seconds`."""
    sent: dict[str, float] = {}
    session = requests.Session()
    count = int(rate * seconds)
    start = time.perf_counter()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        email = f"e2e-{tag}-{rate:.0f}-{i}@example.com"
        body = json.dumps(
            {
                "type": "cart_updated",
                "event_id": f"e2e-{tag}-{rate:.0f}-{i}",
                "profile": {"email": email},
                "occurred_at": datetime.now(UTC).isoformat(),
                "properties": {"cart_value": 42.0},
            }
        )
        sent[email] = time.time()
        session.post(base + "/v1/events", data=body, headers=auth)
    deadline = time.time() + 30
    while time.time() < deadline and not all(e in hubspot.landed for e in sent):
        time.sleep(0.05)
    latencies = [(hubspot.landed[e] - t) * 1000 for e, t in sent.items() if e in hubspot.landed]
    return {
        "n": len(latencies),
        "rate": rate,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
    }


if __name__ == "__main__":
    sys.exit(main())
