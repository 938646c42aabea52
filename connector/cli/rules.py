"""`dcb rules check FILE...`: load rule sets and report every problem as `file:line: reason`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from connector.cli.blocks import library_for
from connector.core.documents import DocumentError
from connector.rulesets import EXAMPLE_SOURCE, load_ruleset_file


def register(subparsers: Any) -> None:
    rules = subparsers.add_parser("rules", help="check rule sets")
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="load rule sets and report every problem (default: DCB_RULES or the example)"
    )
    check.add_argument("files", nargs="*", type=Path, metavar="FILE")
    check.add_argument(
        "--blocks", type=Path, default=None, help="extra blocks folder (default: DCB_BLOCKS_DIR)"
    )
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    try:
        catalogue = library_for(args.blocks).catalogue
    except DocumentError as exc:
        print(exc, file=sys.stderr)
        return 1
    files: list[Path | None] = list(args.files)
    if not files:
        configured = os.environ.get("DCB_RULES")
        files = [Path(configured) if configured else None]
    failed = False
    for path in files:
        try:
            ruleset = load_ruleset_file(path, catalogue)
        except DocumentError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        count = len(ruleset.all_rules())
        print(
            f"{path or EXAMPLE_SOURCE}: ok: rule set {ruleset.name!r} version {ruleset.version}, "
            f"{count} rules, fallback {ruleset.fallback.block}"
        )
    return 1 if failed else 0
