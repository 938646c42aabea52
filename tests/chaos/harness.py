"""The fault test: `dcb serve` in its own process, killed with SIGKILL and restarted while
events pour in and the fake platforms answer 20% 429 and 5% 500.

Used by `tests/chaos/test_chaos.py` (a CI-sized run) and `bench/chaos.py` (the full size).
It checks that every acknowledged event took effect (each profile ends with exactly the
properties its events decide), that duplicates and malformed events changed nothing, and
counts identical writes sent twice (only a call cut off by a kill may be repeated).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import redis
import requests

from adapters.storage.sqlite import SqlitePipelineStore
from blocks.loading import load_library
from connector.core.processing import Processor
from connector.core.properties import differs
from connector.core.storage import Inbound
from connector.rulesets import load_ruleset_file
from tests.fakes.fake_hubspot import FakeHubSpotApi, rate_limited
from tests.fakes.fake_klaviyo import FakeKlaviyoApi
from tests.fakes.http_fake import Fault, Reply, Request
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
EVENTS_KEY = "chaos-key"
WRITE_CALLS = {
    "/crm/v3/objects/contacts/batch/update",
    "/crm/v3/objects/contacts/batch/upsert",
    "/api/profile-import",
    "/api/profile-bulk-import-jobs",
}


#: Marks a write call answered with a fault: a property set sent again after it is a retry.
FAILED = {"__failed__": "yes"}


class _Faulty:
    """Mixin: a share of write calls answer 429 (Retry-After 1) or 500 instead."""

    rng: random.Random
    throttle_share = 0.20
    error_share = 0.05
    written: dict[str, list[dict[str, str]]]

    def take_fault(self, path: str, method: str = "") -> Fault | None:
        if path.rstrip("/") not in WRITE_CALLS:
            return None
        draw = self.rng.random()
        if draw < self.throttle_share:
            return Fault(reply=self.throttle_reply())
        if draw < self.throttle_share + self.error_share:
            return Fault(reply=Reply(500, {"status": "error", "message": "internal error"}))
        return None

    def throttle_reply(self) -> Reply:
        raise NotImplementedError  # each platform's fake gives its own shape


class ChaosHubSpot(_Faulty, FakeHubSpotApi):
    def __init__(self, seed: int) -> None:
        super().__init__(limit_per_10s=10_000)
        self.rng = random.Random(seed)
        self.written = defaultdict(list)

    def throttle_reply(self) -> Reply:
        return rate_limited("TEN_SECONDLY_ROLLING", 1)

    def scripted(self, request: Request, reply: Reply) -> None:
        super().scripted(request, reply)
        for item in (request.body or {}).get("inputs") or []:
            record = str(item.get("id", ""))
            contact = self.contacts.get(record)
            email = contact.properties.get("email", record) if contact else record
            self.written[email].append(FAILED)

    def _apply(self, item: dict[str, Any], upsert: bool) -> Any:
        contact, created = super()._apply(item, upsert)
        if contact is not None:
            email = contact.properties.get("email", contact.id)
            self.written[email].append(dict(item.get("properties") or {}))
        return contact, created


class ChaosKlaviyo(_Faulty, FakeKlaviyoApi):
    def __init__(self, seed: int) -> None:
        super().__init__(
            limits={
                "profile-import": (10_000, 100_000),
                "profile-bulk-import-jobs": (10_000, 100_000),
            }
        )
        self.rng = random.Random(seed + 1)
        self.written = defaultdict(list)

    def throttle_reply(self) -> Reply:
        body = {
            "errors": [
                {
                    "id": "x",
                    "status": 429,
                    "code": "throttled",
                    "title": "Request was throttled.",
                    "detail": "Expected available in 1 second.",
                }
            ]
        }
        return Reply(429, body, {"Retry-After": "1"}, "application/vnd.api+json")

    def scripted(self, request: Request, reply: Reply) -> None:
        super().scripted(request, reply)
        data = (request.body or {}).get("data") or {}
        attributes = data.get("attributes") or {}
        profiles = ((attributes.get("profiles") or {}).get("data")) or [data]
        for profile in profiles:
            email = (profile.get("attributes") or {}).get("email")
            if email:
                self.written[email].append(FAILED)

    def _upsert(self, data: dict[str, Any]) -> Any:
        profile, created = super()._upsert(data)
        if profile is not None:
            props = (data.get("attributes") or {}).get("properties") or {}
            self.written[profile.email or profile.id].append(dict(props))
        return profile, created


@dataclass
class Report:
    events: int
    profiles: int
    acknowledged: int = 0
    duplicates_sent: int = 0
    malformed_sent: int = 0
    kills: int = 0
    redis_restarts: int = 0
    restarts_seconds: list[float] = field(default_factory=list)
    redelivery_seconds: list[float] = field(default_factory=list)
    send_seconds: float = 0.0
    settle_seconds: float = 0.0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    repeated_writes: int = 0
    write_calls: int = 0
    throttled_calls: int = 0

    def lines(self) -> list[str]:
        return [
            f"events sent: {self.events} over {self.profiles} profiles "
            f"({self.duplicates_sent} duplicates, {self.malformed_sent} malformed)",
            f"acknowledged: {self.acknowledged}",
            f"processes SIGKILLed and restarted: {self.kills} "
            f"(restart to ready: {', '.join(f'{s:.1f} s' for s in self.restarts_seconds)}); "
            f"Redis restarted: {self.redis_restarts}",
            *(
                [
                    f"a killed worker's events redelivered after: "
                    f"{', '.join(f'{s:.1f} s' for s in self.redelivery_seconds)}"
                ]
                if self.redelivery_seconds
                else []
            ),
            f"sending took {self.send_seconds:.1f} s; all writes settled {self.settle_seconds:.1f} s after",
            f"profiles whose final properties differ from what their events decide: {len(self.mismatched)}",
            f"profiles never written: {len(self.missing)}",
            f"write calls to the fakes: {self.write_calls}",
            f"identical property sets written twice in a row, no failed call between: "
            f"{self.repeated_writes} (allowed: calls cut off by a kill)",
        ]


@dataclass
class Server:
    """One `dcb` process: `serve` or `web` (with an HTTP port), or a `worker` (port None)."""

    port: int | None
    env: dict[str, str]
    log: Path
    command: tuple[str, ...] = ("serve",)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; returns the seconds until it answered /readyz (0 for a worker)."""
        args = [sys.executable, "-m", "connector.cli", *self.command]
        if self.port is not None:
            args += ["--port", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return 0.0 if self.port is None else self.wait_ready()

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < 60:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).ok:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dcb {self.command[0]} did not become ready; see {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def make_events(count: int, profiles: int, seed: int) -> list[dict[str, Any]]:
    """Valid events (about 85%), exact resends (10%) and malformed ones (5%), in send order."""
    rng = random.Random(seed)
    base = datetime.now(UTC) - timedelta(hours=1)
    sent: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    for i in range(count):
        draw = rng.random()
        if draw < 0.10 and valid:
            sent.append(rng.choice(valid))
            continue
        who = rng.randrange(profiles)
        kind = rng.choice(
            [
                "cart_updated",
                "cart_updated",
                "checkout_started",
                "order_placed",
                "product_viewed",
                "session_started",
                "profile_created",
            ]
        )
        at = base + timedelta(seconds=i * 0.3 + rng.uniform(-20, 20))  # some arrive late
        event: dict[str, Any] = {
            "type": kind,
            "event_id": f"e{i}",
            "occurred_at": at.isoformat(),
            "profile": {"email": f"shopper{who}@example.com"},
            "context": {"logged_in": rng.random() < 0.5},
        }
        if kind in ("cart_updated", "checkout_started"):
            event["properties"] = {
                "cart_value": round(rng.uniform(5, 300), 2),
                "checkout_url": f"https://shop.example/c/{who}",
            }
        if draw > 0.95:
            event["properties"] = {"cart_value": "abc"}
            event["malformed"] = True
        else:
            valid.append(event)
        sent.append(event)
    return sent


def expected_properties(
    acked: list[dict[str, Any]], tmp: Path
) -> dict[tuple[str, str], dict[str, str]]:
    """What the acknowledged events decide, per (platform, email), computed in-process."""
    store = SqlitePipelineStore(tmp / "oracle.sqlite3", queue_limit=10**9)
    library = load_library()
    rules = load_ruleset_file(None, library.catalogue)
    processor = Processor(store, lambda _a: rules, library.renderer, lambda: datetime.now(UTC))
    store.enqueue(
        [Inbound("default", e["event_id"], e, ("hubspot", "klaviyo")) for e in acked], time.time()
    )
    while processor.run_once(1000):
        pass
    out = {}
    for platform in ("hubspot", "klaviyo"):
        for write in store.take_due("default", platform, 10**9, 1e12):
            out[(platform, write.identifiers["email"])] = dict(write.properties)
    store.close()
    return out


def server_env(
    tmp: Path, hubspot: FakeHubSpotApi, klaviyo: FakeKlaviyoApi | None = None, **extra: str
) -> dict[str, str]:
    """The environment for `dcb serve` against these fakes (no DCB_* leaks in from ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCB_")}
    env.update(
        # The events are an hour old: a 30-minute abandonment window would fire timers the
        # oracle does not model. Abandonment has tests of its own (tests/storage, tests/e2e).
        DCB_ABANDON_AFTER="30d",
        DCB_DATA_DIR=str(tmp / "data"),
        DCB_EVENTS_API_KEY=EVENTS_KEY,
        DCB_HUBSPOT_ACCESS_TOKEN=hubspot.token,
        DCB_HUBSPOT_API_URL=hubspot.base_url,
    )
    if klaviyo is not None:
        env.update(DCB_KLAVIYO_API_KEY=klaviyo.api_key, DCB_KLAVIYO_API_URL=klaviyo.base_url)
    return {**env, **extra}


class Embedded:
    """`dcb serve` alone; each fault SIGKILLs and restarts it."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.server = Server(free_port(), env, tmp / "server.log")
        self.port = self.server.port

    def start(self) -> None:
        self.server.start()

    def fault(self, report: Report) -> None:
        self.server.kill()
        report.kills += 1
        report.restarts_seconds.append(self.server.start())

    def stop(self) -> None:
        self.server.terminate()


class Scaled:
    """Redis (append-only, fsync always), `dcb web` and three `dcb worker`s. The faults, in
    turn: SIGKILL the first worker and start a new one (three times), restart Redis."""

    WORKERS = 3

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.redis = RedisServer(tmp / "redis", durable=True)
        (tmp / "redis").mkdir()
        env = {**env, "DCB_REDIS_URL": self.redis.url}
        self.web = Server(free_port(), env, tmp / "web.log", ("web", "--workers", "2"))
        self.workers = [
            Server(None, env, tmp / f"worker{n}.log", ("worker", "--concurrency", "2"))
            for n in range(self.WORKERS)
        ]
        self.port = self.web.port
        self.faults = 0

    def start(self) -> None:
        self.redis.start()
        self.web.start()
        for worker in self.workers:
            worker.start()

    def fault(self, report: Report) -> None:
        self.faults += 1
        if self.faults == 2:  # the second fault restarts Redis itself
            started = time.monotonic()
            self.redis.stop()
            self.redis.start()
            report.redis_restarts += 1
            report.restarts_seconds.append(time.monotonic() - started)
            return
        victim = self.workers[0]
        assert victim.process is not None
        pid = victim.process.pid
        victim.kill()
        report.kills += 1
        killed_at = time.monotonic()
        victim.start()
        report.restarts_seconds.append(0.0)
        report.redelivery_seconds.append(_redelivered(self.redis.url, pid, killed_at))

    def stop(self) -> None:
        for server in (self.web, *self.workers):
            server.terminate()
        self.redis.stop()


def _redelivered(url: str, pid: int, since: float, timeout: float = 60.0) -> float:
    """Seconds from a worker's death until no consumer of its process holds events."""
    client = redis.Redis.from_url(url)
    try:
        while time.monotonic() - since < timeout:
            try:
                consumers = client.xinfo_consumers("dcb:events", "workers")
            except redis.RedisError:
                consumers = []
            mine = [c for c in consumers if f"-{pid}-" in str(c.get("name"))]
            if not any(int(c.get("pending", 0)) for c in mine):
                return time.monotonic() - since
            time.sleep(0.2)
    finally:
        client.close()
    return float("inf")


def run(
    events: int, profiles: int, tmp: Path, *, seed: int = 7, kills: int = 2, scaled: bool = False
) -> Report:
    report = Report(events, profiles)
    hubspot, klaviyo = ChaosHubSpot(seed), ChaosKlaviyo(seed)
    hubspot.define_dcb_properties()
    env = server_env(tmp, hubspot, klaviyo, DCB_FLUSH_MS="20", DCB_LOG_LEVEL="WARNING")
    cluster: Embedded | Scaled = Scaled(tmp, env) if scaled else Embedded(tmp, env)
    try:
        cluster.start()
        acked = _send_all(cluster, make_events(events, profiles, seed), report, kills)
        settled_from = time.monotonic()
        expected = expected_properties(acked, tmp)
        _await_settled(
            hubspot, klaviyo, expected, timeout=float(os.environ.get("CHAOS_SETTLE_TIMEOUT", "120"))
        )
        report.settle_seconds = time.monotonic() - settled_from
        _check(hubspot, klaviyo, expected, report)
    finally:
        cluster.stop()
        hubspot.close()
        klaviyo.close()
    return report


def _send_all(
    cluster: Embedded | Scaled, events: list[dict[str, Any]], report: Report, faults: int
) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{cluster.port}/v1/events"
    session = requests.Session()
    headers = {"Authorization": f"Bearer {EVENTS_KEY}"}
    fault_at = {len(events) * (k + 1) // (faults + 1) for k in range(faults)}
    acked: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    for index, event in enumerate(events):
        if index in fault_at:
            cluster.fault(report)
        body = {k: v for k, v in event.items() if k != "malformed"}
        status = _post_until_answered(session, url, body, headers)
        if event.get("malformed"):
            report.malformed_sent += 1
            assert status == 400, f"malformed event answered {status}"
        elif event["event_id"] in acked:
            report.duplicates_sent += 1
            assert status in (200, 202), status
        else:
            assert status == 202, f"event {event['event_id']} answered {status}"
            acked[event["event_id"]] = body
    report.acknowledged = len(acked)
    report.send_seconds = time.monotonic() - started
    return list(acked.values())


def _post_until_answered(
    session: requests.Session, url: str, body: Any, headers: dict[str, str]
) -> int:
    """POST like a platform would: retry until the connector answers (it may be restarting)."""
    for _ in range(600):
        try:
            response = session.post(url, data=json.dumps(body), headers=headers, timeout=10)
        except requests.RequestException:
            time.sleep(0.1)
            continue
        if response.status_code >= 500:  # Redis restarting: the sender retries later
            time.sleep(0.1)
            continue
        if response.status_code == 429:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        return response.status_code
    raise RuntimeError("the connector never answered")


def _final(api: ChaosHubSpot | ChaosKlaviyo, email: str) -> dict[str, str] | None:
    """The `dcb_*` properties the platform holds for the profile."""
    holder = api.by_email(email)
    if holder is None:
        return None
    return {k: v for k, v in holder.properties.items() if k.startswith("dcb_")}


def _await_settled(
    hubspot: ChaosHubSpot,
    klaviyo: ChaosKlaviyo,
    expected: dict[tuple[str, str], dict[str, str]],
    timeout: float,
) -> None:
    apis = {"hubspot": hubspot, "klaviyo": klaviyo}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with hubspot.lock, klaviyo.lock:
            done = all(
                (got := _final(apis[p], email)) is not None and not differs(got, want)
                for (p, email), want in expected.items()
            )
        if done:
            return
        time.sleep(0.25)


def _check(
    hubspot: ChaosHubSpot,
    klaviyo: ChaosKlaviyo,
    expected: dict[tuple[str, str], dict[str, str]],
    report: Report,
) -> None:
    apis = {"hubspot": hubspot, "klaviyo": klaviyo}
    for (platform, email), want in sorted(expected.items()):
        got = _final(apis[platform], email)
        if got is None:
            report.missing.append(f"{platform}:{email}")
        elif differs(got, want):
            report.mismatched.append(f"{platform}:{email}")
    for api in apis.values():
        report.write_calls += sum(1 for r in api.requests if r.path.rstrip("/") in WRITE_CALLS)
        for writes in api.written.values():
            report.repeated_writes += sum(
                1 for a, b in pairwise(writes) if FAILED not in (a, b) and not differs(a, b)
            )
