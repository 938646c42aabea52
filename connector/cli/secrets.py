"""`dcb secrets rotate`: re-encrypt every stored OAuth token with the first key.

To rotate `DCB_SECRET_KEY`: put a new key first and keep the old one after it
(`NEW,OLD`), run `dcb secrets rotate` (the running connector keeps working: it reads
both), then drop the old key.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from connector.cli.serve import load_settings
from connector.oauth_setup import open_grants
from connector.settings import SettingsError


def register(subparsers: Any) -> None:
    secrets = subparsers.add_parser("secrets", help="the keys that encrypt stored OAuth tokens")
    actions = secrets.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = actions.add_parser(
        "rotate", help="re-encrypt every stored token with the first key of DCB_SECRET_KEY"
    )
    rotate.set_defaults(func=run_rotate)


def run_rotate(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings is None:
        return 1
    if not settings.secret_keys:
        print("dcb secrets rotate: set DCB_SECRET_KEY to NEW,OLD first", file=sys.stderr)
        return 1
    try:
        grants = open_grants(settings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        count = grants.rotate()
    finally:
        grants.close()
    print(f"re-encrypted {count} OAuth grant(s) with the first key of DCB_SECRET_KEY")
    if settings.secret_keys[1:]:
        print("the other keys are no longer needed for them: remove them from DCB_SECRET_KEY")
    return 0
