"""`dcb web` and `dcb worker`: the connector across processes and machines on one Redis.

`dcb web` serves the HTTP app with gunicorn (threaded workers, each building its own Redis
and platform clients after the fork; Prometheus in multiprocess mode). `dcb worker` runs
processor loops and the dispatchers. Both need `DCB_REDIS_URL`: the embedded SQLite store
belongs to one process (`dcb serve`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from types import FrameType
from typing import Any

from gunicorn.app.base import BaseApplication

from connector.accounts import Accounts
from connector.bootstrap import build_service
from connector.cli.serve import SWITCH_INTERVAL, describe, load_config
from connector.clients import provision
from connector.core.documents import DocumentError
from connector.metrics import enable_multiprocess
from connector.settings import SettingsError

log = logging.getLogger("dcb")


def register(subparsers: Any) -> None:
    web = subparsers.add_parser("web", help="the HTTP app only, on gunicorn (needs DCB_REDIS_URL)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    web.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    web.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    web.set_defaults(func=run_web)
    worker = subparsers.add_parser(
        "worker", help="process events and write to the platforms (needs DCB_REDIS_URL)"
    )
    worker.add_argument(
        "--concurrency", type=int, default=2, help="processor loops in this process (default 2)"
    )
    worker.set_defaults(func=run_worker)


def _redis_accounts() -> Accounts | None:
    accounts = load_config()
    if accounts is None:
        return None
    settings = accounts.settings
    if settings.redis_url is None:
        print(
            "this command needs DCB_REDIS_URL (on one machine without Redis, use dcb serve)",
            file=sys.stderr,
        )
        return None
    logging.getLogger().setLevel(settings.log_level)
    return accounts


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn with our options; each worker builds the app after the fork."""

    def __init__(self, accounts: Accounts, options: dict[str, Any]) -> None:
        self._accounts = accounts
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        service = build_service(self._accounts.settings, workers=0, accounts=self._accounts)
        service.start()
        return service.app


def run_web(args: argparse.Namespace) -> int:
    accounts = _redis_accounts()
    if accounts is None:
        return 1
    settings = accounts.settings
    enable_multiprocess(
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="dcb-metrics-"))
    )
    try:
        build_service(settings, workers=0, accounts=accounts).close()  # fail fast on bad rules
    except (DocumentError, SettingsError) as exc:  # bad rules, or keys that read no token
        print(exc, file=sys.stderr)
        return 1
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": "gthread",
        "graceful_timeout": 10,
        "limit_request_line": 8190,
        "accesslog": None,
        "loglevel": settings.log_level.lower(),
        "proc_name": "dcb-web",
    }
    _Gunicorn(accounts, options).run()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    accounts = _redis_accounts()
    if accounts is None:
        return 1
    settings = accounts.settings
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        service = build_service(
            settings, web=False, workers=max(1, args.concurrency), accounts=accounts
        )
    except (DocumentError, SettingsError) as exc:  # bad rules, or keys that read no token
        print(exc, file=sys.stderr)
        return 1
    try:
        provision(service.app.extensions["dcb"]["clients"])
    except Exception as exc:  # a platform that is down must not stop the worker
        log.error("provisioning failed, writes wait until it succeeds: %s", exc)
    stopped = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.start()
    log.info(
        "dcb worker running %d processor loops (accounts: %s)",
        args.concurrency,
        describe(accounts),
    )
    stopped.wait()
    log.info("stopping: finishing what this worker holds")
    service.stop(drain=True)
    return 0
