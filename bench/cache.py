"""Pull endpoint throughput and latency: cache hits, misses, and a churning workload.

Runs `GET /v1/blocks/klaviyo/default/<email>` through the connector's own WSGI app (the
real route, API-key check, lookup service and caches; no socket) for 1,000 profiles with
stored contexts, on the embedded store and on Redis, and prints per store:

- hits: every profile already cached (L1), requests/s with p50/p99;
- misses: each profile's context changed just before its read (timed: the read only),
  so every read decides and renders again, requests/s with p50/p99;
- churn: rounds of reading every profile, with 10% of the profiles changing between
  rounds, served by two app instances sharing the store (as two web processes would,
  each with its own L1), alternating at random: the hit rate per layer and p99;
- baseline: a bare Flask route returning the same JSON, through the same test client.

    python bench/cache.py [--profiles 1000] [--rounds 10] [--no-redis] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask, Response  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from connector.bootstrap import build_service  # noqa: E402
from connector.service import Service  # noqa: E402
from connector.settings import Settings  # noqa: E402
from tests.pull.conftest import BEARER, checkout, give_context, settings  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

ITEMS = ["Wool jacket", "Silk scarf", "Trail shoes", "Blender", "Coffee mug"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(call: Callable[[], Any], n: int, seconds: list[float]) -> None:
    for _ in range(n):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)


def line(name: str, seconds: list[float], extra: str = "") -> None:
    rate = len(seconds) / sum(seconds)
    p50, p99 = statistics.median(seconds) * 1e3, percentile(seconds, 0.99) * 1e3
    print(f"  {name:<10} {rate:>9,.0f} req/s   p50 {p50:6.3f} ms   p99 {p99:6.3f} ms{extra}")


def pull(client: FlaskClient, email: str) -> str:
    answer = client.get(f"/v1/blocks/klaviyo/default/{email}", headers=BEARER)
    assert answer.status_code == 200, answer.text
    return str(answer.headers["X-DCB-Cache"])


def change(service: Service, email: str, rng: random.Random) -> None:
    item = rng.choice(ITEMS)
    event = checkout(email, item=item, value=round(rng.uniform(20, 300), 2))
    event["event_id"] = f"{email}-{rng.random()}"
    give_context(service.app.extensions["dcb"]["store"], event)


def run_store(name: str, config: Settings, args: argparse.Namespace) -> list[str]:
    rng = random.Random(args.seed)
    first = build_service(config, workers=0)
    second = build_service(config, workers=0)
    clients = [first.app.test_client(), second.app.test_client()]
    emails = [f"shopper{n}@example.com" for n in range(args.profiles)]
    for email in emails:
        change(first, email, rng)
    print(f"{name}:")
    for email in emails:  # warm both L1s and L2
        pull(clients[0], email)
        pull(clients[1], email)

    hits: list[float] = []
    for email in rng.sample(emails, len(emails)):
        timed(lambda e=email: pull(clients[0], e), 1, hits)  # type: ignore[misc]
    line("hits", hits)

    misses: list[float] = []
    for email in rng.sample(emails, len(emails)):
        change(first, email, rng)  # not timed
        timed(lambda e=email: pull(clients[0], e), 1, misses)  # type: ignore[misc]
    line("misses", misses, f"   ({statistics.mean(misses) / statistics.mean(hits):.1f}x a hit)")

    sources: Counter[str] = Counter()
    churn: list[float] = []
    for _ in range(args.rounds):
        for email in rng.sample(emails, len(emails) // 10):  # 10% change between rounds
            change(first, email, rng)
        for email in rng.sample(emails, len(emails)):
            client = rng.choice(clients)
            started = time.perf_counter()
            sources[pull(client, email)] += 1
            churn.append(time.perf_counter() - started)
    total = sum(sources.values())
    hit_rate = (sources["l1"] + sources["l2"]) / total
    line(
        "churn",
        churn,
        f"   hit rate {hit_rate:.1%} (l1 {sources['l1'] / total:.1%}, "
        f"l2 {sources['l2'] / total:.1%}, decided {sources['decided'] / total:.1%})",
    )
    first.close()
    second.close()
    return [name]


def baseline(args: argparse.Namespace) -> None:
    """A bare Flask route answering the same JSON: the floor of the test client itself."""
    app = Flask("bare")
    body = json.dumps({"decided": True, "block": "x", "properties": {"dcb_body": "y" * 1500}})

    @app.get("/v1/blocks/<platform>/<account>/<path:profile_id>")
    def bare(platform: str, account: str, profile_id: str) -> Response:
        return Response(body, content_type="application/json")

    client = app.test_client()
    seconds: list[float] = []
    timed(
        lambda: client.get("/v1/blocks/klaviyo/default/a@b.c", headers=BEARER),
        args.profiles,
        seconds,
    )
    print("baseline (bare Flask route, same test client):")
    line("bare", seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-redis", action="store_true", help="only the embedded store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcb-bench-cache-") as tmp:
        baseline(args)
        run_store("embedded (SQLite, L2 in the same file)", settings(Path(tmp) / "data"), args)
        if not args.no_redis:
            server = RedisServer(Path(tmp))
            server.start()
            try:
                config = settings(Path(tmp) / "data-redis", server.url)
                run_store("redis (L2 and pub/sub hints on Redis)", config, args)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
