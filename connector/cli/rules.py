"""`dcb rules check FILE...`: load rule sets and report every problem as `file:line: reason`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from blocks.loading import load_library
from connector.core.catalogue import Catalogue
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


def catalogue_for(blocks_dir: Path | None) -> Catalogue:
    """The shipped blocks plus `blocks_dir` (or DCB_BLOCKS_DIR), templates checked too;
    raises DocumentError."""
    configured = os.environ.get("DCB_BLOCKS_DIR")
    return load_library(blocks_dir or (Path(configured) if configured else None)).catalogue


def run_check(args: argparse.Namespace) -> int:
    try:
        catalogue = catalogue_for(args.blocks)
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
