"""Operating commands: `dcb status`, `dcb dlq list`, `dcb dlq replay [ID...|--all]`.

They open the same store as the running connector (the embedded SQLite file in
`DCB_DATA_DIR`, which allows a second process to read and queue work beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from connector.accounts import load_accounts
from connector.cli.serve import load_settings
from connector.core.intake import REDECIDE
from connector.core.storage import Inbound
from connector.oauth_setup import account_tokens, open_grants
from connector.runtime import Runtime, open_store
from connector.settings import SettingsError


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="queue depth, lag, pending writes, dead letters")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=run_status)
    dlq = subparsers.add_parser("dlq", help="dead letters: writes that failed for good")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list dead letters")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_dlq_list)
    replay = actions.add_parser(
        "replay", help="decide the profiles again from their current context and queue the writes"
    )
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.set_defaults(func=run_dlq_replay)


def run_status(args: argparse.Namespace) -> int:
    return show_status(os.environ, sys.stdout, sys.stderr, as_json=args.json)


def show_status(
    environ: Mapping[str, str], out: TextIO, err: TextIO, *, as_json: bool = False
) -> int:
    """Print the store's state per account and each public-app install's; the exit status."""
    try:
        accounts = load_accounts(environ)
        grants = open_grants(accounts.settings)
    except SettingsError as exc:
        print(exc, file=err)
        return 1
    settings = accounts.settings
    try:
        source = account_tokens(accounts, grants, Runtime())
        installs = {
            g.account: {
                "platform": g.platform,
                ("portal" if g.platform == "hubspot" else "account_id"): g.account_id,
                "status": g.status,
                "reason": g.reason,
                "account": source.owner_of(g.account_id, None, g.platform) if source else None,
            }
            for g in grants.grants()
        }
    finally:
        grants.close()
    store = open_store(settings)
    try:
        report = store.status(time.time())
    finally:
        store.close()
    if installs:
        report["oauth"] = installs
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True), file=out)
        return 0
    print(f"store: {report['store']} ({report.get('path', '')})", file=out)
    rows = report["accounts"] or {"default": {}}
    for account, info in sorted(rows.items()):
        print(f"account {account}:", file=out)
        print(
            f"  queued events: {info.get('queued', 0)}"
            + (
                f" (oldest {info['oldest_queued_seconds']} s)"
                if "oldest_queued_seconds" in info
                else ""
            ),
            file=out,
        )
        for platform, pending in sorted((info.get("pending") or {}).items()):
            print(
                f"  {platform}: {pending['writes']} pending writes, lag {pending['lag_seconds']} s,"
                f" {pending['retrying']} retrying",
                file=out,
            )
        for platform, pause in sorted((info.get("paused") or {}).items()):
            print(f"  {platform}: paused {pause}", file=out)
        for platform, error in sorted((info.get("last_errors") or {}).items()):
            print(f"  {platform}: last error: {error}", file=out)
        print(f"  dead letters: {info.get('dead_letters', 0)}", file=out)
    for account, install in sorted(installs.items()):
        reason = f": {install['reason']}" if install["reason"] else ""
        hubspot = install["platform"] == "hubspot"
        unused = "its webhooks are refused" if hubspot else "nothing writes with it"
        serves = f"account {install['account']}" if install["account"] else f"no account: {unused}"
        what = f"HubSpot portal {install['portal']}" if hubspot else (
            f"Klaviyo account {install['account_id']}"
        )
        print(f"oauth {account} ({what}, {serves}): {install['status']}{reason}", file=out)
    return 0


def run_dlq_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings is None:
        return 1
    store = open_store(settings)
    try:
        letters = store.dead_letters(args.limit)
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "account": d.account,
                        "platform": d.platform,
                        "profile": d.profile_key,
                        "reason": d.reason,
                        "attempts": d.attempts,
                        "failed_at": _when(d.failed_at),
                    }
                    for d in letters
                ],
                indent=2,
            )
        )
        return 0
    if not letters:
        print("no dead letters")
    for d in letters:
        print(
            f"{d.id}\t{_when(d.failed_at)}\t{d.account}/{d.platform}\t{d.profile_key}\t"
            f"{d.attempts} attempts\t{d.reason}"
        )
    return 0


def run_dlq_replay(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        print("dcb dlq replay: name dead letter ids, or --all", file=sys.stderr)
        return 1
    settings = load_settings()
    if settings is None:
        return 1
    store = open_store(settings)
    try:
        letters = store.remove_dead_letters([] if args.all else list(args.ids))
        missing = set(args.ids) - {d.id for d in letters}
        items = [
            Inbound(
                d.account,
                f"replay:{uuid.uuid4().hex}",
                {REDECIDE: dict(d.identifiers)},
                (d.platform,),
            )
            for d in letters
        ]
        if items:
            store.enqueue(items, time.time())
    finally:
        store.close()
    for d in letters:
        print(
            f"replaying {d.id}: {d.account}/{d.platform} {d.profile_key} (re-decided from its "
            "current context)"
        )
    if missing:
        print(f"no dead letter with id {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
