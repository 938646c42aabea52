"""`dcb blocks list` and `dcb blocks render NAME --params JSON [--event FILE]`.

Also home of what `dcb simulate` shares: loading the block library (shipped blocks plus
`--blocks` or DCB_BLOCKS_DIR) and reading JSON files with errors that name the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blocks.loading import BlockLibrary, load_library
from connector.core.catalogue import CatalogueError
from connector.core.documents import DocumentError
from connector.core.events import Event, EventError, parse_event


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
