"""`dcb identity sign EMAIL` (or `--external-id ID`): an identity token for `dcb.js`.

For trying the site snippet and for shops without their own signing code: it signs with
the first `DCB_IDENTITY_SECRET` (the current one; every listed secret verifies).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from connector.cli.serve import load_settings
from webhooks.identity import sign_identity


def register(subparsers: Any) -> None:
    identity = subparsers.add_parser("identity", help="identity tokens for the site snippet")
    actions = identity.add_subparsers(dest="action", required=True, metavar="ACTION")
    sign = actions.add_parser("sign", help="print the token for a shopper's email (or id)")
    sign.add_argument("value", metavar="EMAIL", help="the shopper's email (or id: --external-id)")
    sign.add_argument(
        "--external-id", action="store_true", help="EMAIL is the shop's customer id instead"
    )
    sign.set_defaults(func=run_sign)


def run_sign(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings is None:
        return 1
    if not settings.identity_secrets:
        print("DCB_IDENTITY_SECRET is not set: there is nothing to sign with", file=sys.stderr)
        return 1
    kind = "external_id" if args.external_id else "email"
    if kind == "email" and "@" not in args.value:
        print(f"{args.value!r} is not an email (--external-id signs an id)", file=sys.stderr)
        return 1
    try:
        token = sign_identity(settings.identity_secrets[0].value, kind, args.value)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(token)
    return 0
