"""`dcb accounts list | test NAME | remove NAME`: the accounts this connector serves.

- `list` shows every account (`dcb.toml`'s and the environment's implicit `default`),
  with where each is defined and where its credentials come from, never their values.
  It works with no `DCB_CONFIG` (the implicit account, or none).
- `test NAME` calls each of the account's platforms with its credentials (the
  provisioning check the connector runs at start: HubSpot's property group and `dcb_*`
  properties, created where missing; Klaviyo's cheapest read) and prints a verdict:
  exit status 0 when every platform accepted them.
- `remove NAME` erases everything the store holds for the account (queued events,
  contexts, pending writes, timers, dead letters, dedup keys, rate-limit state) and its
  tokens in the token store; other accounts are untouched. It asks to confirm unless
  `--yes`. Remove the account from `dcb.toml` (and restart) first, or new events bring
  it back; the tokens of a public-app install no account uses any more are then erased
  by its grant's name, `remove hubspot-<portalId>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from connector.accounts import NAME, Account, Accounts, load_accounts
from connector.clients import build_clients
from connector.core.ports import TokenSource
from connector.installs import AccountTokens
from connector.oauth_setup import token_source
from connector.runtime import Runtime, open_store
from connector.settings import SettingsError


def register(subparsers: Any) -> None:
    accounts = subparsers.add_parser("accounts", help="the accounts this connector serves")
    actions = accounts.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list the accounts and where they are defined")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)
    test = actions.add_parser("test", help="check an account's credentials with its platforms")
    test.add_argument("name", metavar="NAME")
    test.set_defaults(func=run_test)
    remove = actions.add_parser("remove", help="erase everything held for an account")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--yes", action="store_true", help="do not ask to confirm")
    remove.set_defaults(func=run_remove)


def _load(environ: Mapping[str, str], err: TextIO) -> Accounts | None:
    try:
        return load_accounts(environ)
    except SettingsError as exc:
        print(exc, file=err)
        return None


def run_list(args: argparse.Namespace) -> int:
    return list_accounts(os.environ, sys.stdout, sys.stderr, as_json=args.json)


def run_test(args: argparse.Namespace) -> int:
    return test_account(args.name, os.environ, Runtime(), sys.stdout, sys.stderr)


def run_remove(args: argparse.Namespace) -> int:
    confirm = None if args.yes else _ask
    return remove_account(args.name, os.environ, sys.stdout, sys.stderr, confirm=confirm)


def describe(account: Account) -> dict[str, Any]:
    """What `list` shows of an account: no secret, only where each comes from."""
    s = account.settings
    credentials = {
        "hubspot": "environment" if s.hubspot_access_token else None,
        "klaviyo": "environment" if s.klaviyo_api_key else None,
    }
    if account.token_store and account.platform:
        credentials[account.platform] = f"token store ({account.token_store})"
    return {
        "name": account.name,
        "platforms": list(account.platforms),
        "account_ids": {p: account.account_id(p) for p in account.platforms},
        "app": account.app if account.platform else (
            account.hubspot_app if "hubspot" in account.platforms else None
        ),
        "credentials": {p: c for p, c in credentials.items() if c},
        "rules": str(s.rules) if s.rules else "(the shipped example)",
        "abandon_after": _duration(s.abandon_after.total_seconds()),
        "verified_by": _verified_by(account),
        "defined_in": account.origin,
    }


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _verified_by(account: Account) -> list[str]:
    s, found = account.settings, []
    if "hubspot" in account.platforms:
        if account.hubspot_app == "public":
            found.append("HubSpot public app secret + portal id")
        elif s.hubspot_client_secrets:
            found.append("HubSpot client secret")
    if "klaviyo" in account.platforms:
        found += ["Klaviyo webhook secret"] if s.klaviyo_webhook_secrets else []
        found += ["Klaviyo flow token"] if s.klaviyo_flow_tokens else []
    return found + (["events API key"] if s.events_api_keys else [])


def list_accounts(
    environ: Mapping[str, str], out: TextIO, err: TextIO, *, as_json: bool = False
) -> int:
    accounts = _load(environ, err)
    if accounts is None:
        return 1
    rows = [describe(a) for a in accounts]
    if as_json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not rows:
        print(
            "no accounts: set DCB_HUBSPOT_ACCESS_TOKEN or DCB_KLAVIYO_API_KEY, or list "
            "accounts in a dcb.toml named by DCB_CONFIG",
            file=out,
        )
        return 0
    for row in rows:
        ids = ", ".join(f"{p} {i or '(any)'}" for p, i in row["account_ids"].items())
        print(f"{row['name']}: {ids or 'no platform'}", file=out)
        creds = ", ".join(f"{p} from {c}" for p, c in row["credentials"].items())
        print(f"  credentials: {creds}", file=out)
        print(f"  requests verified by: {', '.join(row['verified_by']) or 'nothing'}", file=out)
        print(f"  rules: {row['rules']}; abandon after {row['abandon_after']}", file=out)
        print(f"  defined in: {row['defined_in']}", file=out)
    return 0


def test_account(
    name: str,
    environ: Mapping[str, str],
    runtime: Runtime,
    out: TextIO,
    err: TextIO,
    tokens: TokenSource | None = None,
) -> int:
    """Call each of the account's platforms with its credentials; the exit status."""
    accounts = _load(environ, err)
    if accounts is None:
        return 1
    account = accounts.get(name)
    if account is None:
        print(f"no account {name!r} (known: {', '.join(accounts.names) or 'none'})", file=err)
        return 1
    source = tokens if tokens is not None else token_source(accounts)
    clients = build_clients(account.settings, runtime, account=account, tokens=source)
    ok = True
    for platform in account.platforms:
        if platform not in clients:
            ok = False
            print(f"{name}/{platform}: FAILED: no access token in the token store", file=out)
            continue
        client, _ = clients[platform]
        try:
            report = client.provision()
        except Exception as exc:  # an unreachable platform is a verdict, not a traceback
            ok = False
            print(f"{name}/{platform}: FAILED: {type(exc).__name__}: cannot reach it", file=out)
            continue
        if report.problems:
            ok = False
            problems = _hide("; ".join(report.problems), account, platform, source)
            print(f"{name}/{platform}: FAILED: {problems}", file=out)
        else:
            created = f" (created {', '.join(report.created)})" if report.created else ""
            print(f"{name}/{platform}: ok, the credentials work{created}", file=out)
    if not account.platforms:
        print(f"{name}: no platform credentials", file=out)
        return 1
    return 0 if ok else 1


def _hide(text: str, account: Account, platform: str, tokens: TokenSource | None) -> str:
    secret = account.access_token(platform, tokens)
    return text.replace(secret, "***") if secret else text


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        return ""
    return input(prompt)


def remove_account(
    name: str,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    *,
    confirm: Callable[[str], str] | None = None,
    tokens: TokenSource | None = None,
) -> int:
    """Erase the account from the store (and its tokens); the exit status. `confirm`
    (a prompt function) must answer the account's name, unless it is None."""
    if not NAME.match(name):
        print(f"{name!r} is not an account name (lower case letters, digits, - and _)", file=err)
        return 1
    accounts = _load(environ, err)
    if accounts is None:
        return 1
    if confirm is not None:
        answer = confirm(f"Erase everything held for account {name!r}? Type its name: ")
        if answer.strip() != name:
            print("not removed (run with --yes to skip this question)", file=err)
            return 1
    store = open_store(accounts.settings)
    try:
        gone = store.erase_account(name)
    finally:
        store.close()
    source = tokens if tokens is not None else token_source(accounts)
    token_gone = source.erase(name) if source is not None else False
    print(
        f"removed account {name}: {gone['events']} queued events, {gone['profiles']} profiles, "
        f"{gone['pending']} pending writes, {gone['timers']} timers, "
        f"{gone['dead_letters']} dead letters" + (", its tokens" if token_gone else ""),
        file=out,
    )
    still = accounts.get(name)
    if still is None and isinstance(source, AccountTokens) and (orphans := source.orphans()):
        names = ", ".join(sorted(orphans))
        print(
            f"note: installs no account uses keep their tokens ({names}): `dcb accounts "
            "remove hubspot-<portalId>` (or klaviyo-<accountId>) erases one",
            file=err,
        )
    if still is not None:
        print(
            f"note: {name} is still configured ({still.origin}): remove it there and restart, or "
            "new events bring it back",
            file=err,
        )
    return 0
