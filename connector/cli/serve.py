"""`dcb serve`: the web app and the pipeline's workers in one process, on the embedded store."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

from waitress import create_server

from connector.accounts import Accounts, load_accounts
from connector.bootstrap import build_service
from connector.clients import provision
from connector.core.documents import DocumentError
from connector.settings import Settings, SettingsError

log = logging.getLogger("dcb")

#: waitress's own cap on a request body; the routes enforce their lower limits themselves.
SERVER_MAX_BODY = 9 * 1024 * 1024


SWITCH_INTERVAL = 0.001


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave the server loop."""


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the connector (web app and workers)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--threads", type=int, default=8, help="web threads (default 8)")
    serve.set_defaults(func=run)


def load_settings() -> Settings | None:
    """Settings from the environment, or None after printing every problem."""
    try:
        return Settings.from_env(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return None


def load_config() -> Accounts | None:
    """The settings and every account (`DCB_CONFIG`), or None after printing every problem
    (each with its file and line)."""
    try:
        return load_accounts(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return None


def describe(accounts: Accounts) -> str:
    """`shop-one (hubspot), shop-two (klaviyo)`, for start-up log lines."""
    return ", ".join(f"{a.name} ({'+'.join(a.platforms)})" for a in accounts) or "none"


def run(args: argparse.Namespace) -> int:
    accounts = load_config()
    if accounts is None:
        return 1
    settings = accounts.settings
    logging.getLogger().setLevel(settings.log_level)
    # Web threads wait on the GIL while workers decide and render: hand it over every
    # millisecond (default 5) so acknowledgements stay quick under load.
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        service = build_service(settings, accounts=accounts)
    except (DocumentError, SettingsError) as exc:  # bad rules, or keys that read no token
        print(exc, file=sys.stderr)
        return 1
    clients = service.app.extensions["dcb"]["clients"]
    try:
        provision(clients)
    except Exception as exc:  # a platform that is down must not stop the connector
        log.error("provisioning failed, writes wait until it succeeds: %s", exc)
    server = create_server(
        service.app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_request_body_size=SERVER_MAX_BODY,
        ident="dcb",
    )
    service.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stop(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "dcb serving on http://%s:%s (accounts: %s, data: %s)",
        args.host,
        server.effective_port,
        describe(accounts),
        settings.data_dir,
    )
    try:
        server.run()
    except _Stop:
        log.info("stopping: no new requests; draining in-flight work")
    finally:
        server.close()
        service.stop(drain=True)
    return 0
