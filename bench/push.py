"""Outbound push: API calls per 100 profiles and profiles written per second, per platform.

Writes 10,000 decided profiles (all thirteen `dcb_*` properties, ~1.5 KB of HTML each)
through the `Deliverer` and each real client (official SDK) against its fake API on
loopback, with the real clock, and prints the figures next to the ceiling the documented
rate limit allows. Then, for Klaviyo, compares one upsert per profile with a bulk import
job per batch size, which is where `BULK_THRESHOLD` comes from.

    python bench/push.py [--profiles 10000] [--klaviyo-scale 60]

Klaviyo's profile-import steady limit (700/min) would make 10,000 single upserts take
14 minutes, so that run scales the fake's and the gate's limits by `--klaviyo-scale` and
says so; HubSpot runs at the documented 100 requests / 10 s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.hubspot.client import LIMIT_PER_10S, HubSpotClient, hubspot_throttle  # noqa: E402
from adapters.klaviyo.client import (  # noqa: E402
    BULK_IMPORT,
    PROFILE_IMPORT,
    RATE_LIMITS,
    KlaviyoClient,
    klaviyo_throttle,
)
from connector.core.delivery import Deliverer  # noqa: E402
from connector.core.events import ProfileRef  # noqa: E402
from connector.core.pauses import Pauses  # noqa: E402
from connector.core.ports import PlatformClient, ProfileWrite, WriteStatus  # noqa: E402
from connector.core.properties_schema import PROPERTY_NAMES  # noqa: E402
from connector.manifest import load_manifest  # noqa: E402
from tests.fakes.fake_hubspot import FakeHubSpotApi  # noqa: E402
from tests.fakes.fake_klaviyo import FakeKlaviyoApi  # noqa: E402

POLL_INTERVAL = 0.05  # seconds between bulk job polls in this bench (real jobs: seconds)


def decided(n: int) -> list[ProfileWrite]:
    html = "<table><tr><td>" + "Your cart is waiting. " * 60 + "</td></tr></table>"
    values = {name: f"{name}-value" for name in PROPERTY_NAMES}
    values.update(dcb_html=html, dcb_computed_at="2026-11-28T10:00:00Z")
    return [
        ProfileWrite(f"k{i}", ProfileRef(email=f"shopper{i}@example.com"), dict(values))
        for i in range(n)
    ]


def run(client: PlatformClient, pauses: Pauses, writes: list[ProfileWrite]) -> float:
    deliverer = Deliverer(client, pauses, sleep=time.sleep, random=random.random)
    start = time.perf_counter()
    outcomes = deliverer.deliver(writes)
    elapsed = time.perf_counter() - start
    bad = [o for o in outcomes if o.status is not WriteStatus.WRITTEN]
    if bad:
        raise SystemExit(f"{len(bad)} writes not written, e.g. {bad[0].reason}")
    return elapsed


def line(name: str, calls: int, n: int, elapsed: float, ceiling: float, note: str) -> None:
    print(
        f"  {name:<34} {100 * calls / n:>8.2f} calls/100   {n / elapsed:>9,.0f} profiles/s"
        f"   ceiling {ceiling:>9,.0f}/s  {note}"
    )


def hubspot(n: int) -> None:
    print(f"HubSpot (documented limit {LIMIT_PER_10S} requests / 10 s, 100 contacts per call)")
    with FakeHubSpotApi("pat-bench", limit_per_10s=LIMIT_PER_10S) as api:
        api.define_dcb_properties()
        pauses = Pauses(time.monotonic)
        gate = hubspot_throttle(pauses, time.sleep, time.monotonic)
        client = HubSpotClient(
            "pat-bench", base_url=api.base_url, gate=gate, schema=load_manifest().property_schema
        )
        elapsed = run(client, pauses, decided(n))
        calls = len(api.batch_calls())
        ceiling = LIMIT_PER_10S / 10 * 100
        window_note = "(sustained; one 10-s window admits 100 calls)"
        line("batch/upsert by email", calls, n, elapsed, ceiling, window_note)


def klaviyo(n: int, scale: float) -> None:
    per_s, per_min = RATE_LIMITS[PROFILE_IMPORT]
    bulk_s, bulk_min = RATE_LIMITS[BULK_IMPORT]
    print(f"Klaviyo (profile-import {per_s}/s {per_min}/min; bulk jobs {bulk_s}/s {bulk_min}/min)")
    for label, threshold, factor in (
        ("profile-import, one per profile", 10**9, scale),
        ("bulk import jobs (default)", None, 1.0),
    ):
        limits = {
            k: (max(1, round(s * factor)), max(1, round(m * factor)))
            for k, (s, m) in RATE_LIMITS.items()
        }
        with FakeKlaviyoApi(api_key="pk_bench", limits=limits, job_polls=1) as api:
            pauses = Pauses(time.monotonic)
            gate = klaviyo_throttle(pauses, time.sleep, time.monotonic, scale=factor)
            extra = {} if threshold is None else {"bulk_threshold": threshold}
            client = KlaviyoClient(
                "pk_bench",
                base_url=api.base_url,
                gate=gate,
                sleep=time.sleep,
                poll_interval=POLL_INTERVAL,
                **extra,
            )
            elapsed = run(client, pauses, decided(n))
            calls = len(api.requests)
            if threshold is None:
                note = f"(jobs of {client.max_batch}; {len(api.jobs)} jobs, poll every "
                note += f"{POLL_INTERVAL}s)"
                ceiling = bulk_min / 60 / (calls / len(api.jobs)) * client.max_batch
            else:
                note = f"(limits scaled x{factor:g} for this run; documented ceiling "
                note += f"{per_min / 60:.1f}/s)"
                ceiling = per_min / 60 * factor
            line(label, calls, n, elapsed, ceiling, note)


def threshold_table() -> None:
    print("Klaviyo: one upsert per profile vs one bulk job, per batch size (documented limits)")
    print("  batch   upserts: calls  wall ms  ceiling/s   bulk job: calls  wall ms  ceiling/s")
    per_min = RATE_LIMITS[PROFILE_IMPORT][1]
    bulk_min = RATE_LIMITS[BULK_IMPORT][1]
    for size in (2, 5, 10, 15, 25, 50, 100):
        row = []
        for threshold in (10**9, 2):
            with FakeKlaviyoApi(api_key="pk_bench", job_polls=1) as api:
                gate = klaviyo_throttle(Pauses(time.monotonic), time.sleep, time.monotonic)
                client = KlaviyoClient(
                    "pk_bench",
                    base_url=api.base_url,
                    gate=gate,
                    sleep=time.sleep,
                    poll_interval=POLL_INTERVAL,
                    bulk_threshold=threshold,
                )
                writes = decided(size)
                ms = _timed(partial(client.write, writes))
                calls = len(api.requests)
                limit = per_min if threshold > size else bulk_min
                row.append((calls, ms, limit / 60 / calls * size))
        (uc, ums, uceil), (bc, bms, bceil) = row
        print(
            f"  {size:>5}   {uc:>14} {ums:>8.1f} {uceil:>10.1f}   {bc:>15} {bms:>8.1f} "
            f"{bceil:>10.1f}"
        )
    print(
        f"  bulk jobs include {POLL_INTERVAL}s per poll here; real jobs take longer, so the"
        " client keeps small batches on profile-import (BULK_THRESHOLD)"
    )


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--klaviyo-scale", type=float, default=60.0)
    args = parser.parse_args()
    print(f"{args.profiles:,} decided profiles, {len(PROPERTY_NAMES)} properties each\n")
    hubspot(args.profiles)
    print()
    klaviyo(args.profiles, args.klaviyo_scale)
    print()
    threshold_table()


if __name__ == "__main__":
    main()
