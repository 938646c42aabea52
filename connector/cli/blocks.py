"""`dcb blocks list`, `dcb blocks render NAME --params JSON [--event FILE]` and
`dcb blocks url PLATFORM PROFILE_ID [--ttl 1h] [--cdn]` (a signed pull URL).

Also home of what `dcb simulate` shares: loading the block library (shipped blocks plus
`--blocks` or DCB_BLOCKS_DIR) and reading JSON files with errors that name the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blocks.loading import BlockLibrary, load_library
from connector.core.catalogue import CatalogueError
from connector.core.documents import DocumentError
from connector.core.durations import parse_duration
from connector.core.events import Event, EventError, parse_event
from connector.core.lookup import PullError, profile_identifiers
from connector.settings import Settings, SettingsError
from webhooks.signed_urls import sign_path

#: The longest a signed URL may live: a leaked URL must stop working some day.
MAX_URL_TTL_SECONDS = 366 * 86400


class InputError(Exception):
    """A file or option given on the command line is unusable; the message says which."""


def register(subparsers: Any) -> None:
    blocks = subparsers.add_parser("blocks", help="list and render content blocks")
    actions = blocks.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every block with its parameters")
    listing.add_argument("--blocks", type=Path, default=None, help="extra blocks folder")
    listing.set_defaults(func=run_list)
    render = actions.add_parser("render", help="render one block and print its outputs")
    render.add_argument("name", metavar="NAME")
    render.add_argument("--params", default="{}", help='parameters as JSON, e.g. {"coupon": "X"}')
    render.add_argument("--event", type=Path, default=None, help="event JSON file")
    render.add_argument("--profile", type=Path, default=None, help="profile JSON file")
    render.add_argument("--json", action="store_true", help="print one JSON document")
    render.add_argument("--blocks", type=Path, default=None, help="extra blocks folder")
    render.set_defaults(func=run_render)
    url = actions.add_parser(
        "url", help="a signed, expiring URL of a profile's current block (DCB_URL_SIGNING_KEY)"
    )
    url.add_argument("platform", metavar="PLATFORM", help="hubspot or klaviyo")
    url.add_argument(
        "profile_id",
        metavar="PROFILE_ID",
        help="the platform's id, an email, or kind:value (e.g. external_id:u-42)",
    )
    url.add_argument("--ttl", default="1h", help="how long it stays valid (default 1h)")
    url.add_argument("--cdn", action="store_true", help="let CDNs cache it (public, Surrogate-Key)")
    url.add_argument("--format", choices=("json", "html", "text"), default=None)
    url.add_argument("--account", default="default", help="the account (default: default)")
    url.add_argument("--base", default=None, help="base URL (default DCB_PUBLIC_URL)")
    url.set_defaults(func=run_url)


def library_for(blocks_dir: Path | None) -> BlockLibrary:
    """The shipped blocks plus `blocks_dir` (or DCB_BLOCKS_DIR); raises `DocumentError`."""
    configured = os.environ.get("DCB_BLOCKS_DIR")
    return load_library(blocks_dir or (Path(configured) if configured else None))


def read_json(path: Path) -> Any:
    """The JSON value in `path`; raises `InputError` naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def read_event(path: Path, received_at: datetime) -> Event:
    """The event in `path`; raises `InputError` naming the file and the field."""
    try:
        return parse_event(read_json(path), received_at=received_at)
    except EventError as exc:
        raise InputError(f"{path}: {exc}") from None


def read_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; raises `InputError` for anything else."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object")
    return value


def run_list(args: argparse.Namespace) -> int:
    try:
        library = library_for(args.blocks)
    except DocumentError as exc:
        print(exc, file=sys.stderr)
        return 1
    for block_id in sorted(library.catalogue):
        spec = library.catalogue[block_id]
        print(f"{block_id}: {spec.description}" if spec.description else block_id)
        for param in spec.params.values():
            default = "" if param.default is None else f" = {json.dumps(param.default)}"
            print(f"  {param.name} ({param.type}){default}")
    return 0


def run_render(args: argparse.Namespace) -> int:
    try:
        library = library_for(args.blocks)
        params = _params(args.params)
        event = read_event(args.event, datetime.now(UTC)) if args.event else None
        profile = read_object(args.profile) if args.profile else {}
        spec = library.catalogue.get(args.name)
        if spec is None:
            raise InputError(f"unknown block {args.name!r} (see `dcb blocks list`)")
        spec.resolve(params)
    except (DocumentError, InputError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except CatalogueError as exc:
        print(f"--params: {exc}", file=sys.stderr)
        return 1
    rendered = library.renderer.render(args.name, params, event, profile)
    if rendered.fell_back:
        print(f"{args.name}: rendering failed: {rendered.error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dict(rendered.outputs), ensure_ascii=False, indent=2))
    else:
        print_outputs(rendered.outputs)
    return 0


def _params(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--params: invalid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InputError("--params: expected a JSON object")
    return value


def print_outputs(values: Any, prefix: str = "") -> None:
    """`name: value` lines; multi-line values indented beneath their name."""
    for name, value in values.items():
        if "\n" in value:
            print(f"{prefix}{name}: |")
            for line in value.splitlines():
                print(f"{prefix}  {line}")
        else:
            print(f"{prefix}{name}: {value}")


def run_url(args: argparse.Namespace) -> int:
    """Print a signed URL of `GET /v1/blocks/PLATFORM/ACCOUNT/PROFILE_ID`."""
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not settings.url_signing_keys:
        print("set DCB_URL_SIGNING_KEY to sign URLs (the connector needs the same key)",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        ttl = parse_duration(args.ttl).total_seconds()
    except ValueError as exc:
        print(f"--ttl: {exc}", file=sys.stderr)
        return 1
    try:
        profile_identifiers(args.platform, args.profile_id)
    except PullError as exc:
        print(f"{args.platform} {args.profile_id}: {exc.message}", file=sys.stderr)
        return 1
    if not 0 < ttl <= MAX_URL_TTL_SECONDS:
        print("--ttl: must be longer than 0s and at most 366d", file=sys.stderr)
        return 1
    expires = int(time.time() + ttl)
    path = f"/v1/blocks/{args.platform}/{args.account}/{args.profile_id}"
    key = settings.url_signing_keys[0].value
    signed = sign_path(path, key=key, expires=expires, cdn=args.cdn)
    if args.format:
        signed += f"&format={args.format}"
    base = args.base or settings.public_url or "http://127.0.0.1:8080"
    print(base.rstrip("/") + signed)
    return 0
