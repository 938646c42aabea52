"""The `dcb` command: one subcommand module each, registered on one argparse parser.

Every command answers bad input with a message naming the file (and line) and exit
status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from connector.cli import accounts as accounts_command
from connector.cli import blocks as blocks_command
from connector.cli import hubspot_project as hubspot_project_command
from connector.cli import identity as identity_command
from connector.cli import install as install_command
from connector.cli import ops as ops_command
from connector.cli import rules as rules_command
from connector.cli import scale as scale_command
from connector.cli import secrets as secrets_command
from connector.cli import serve as serve_command
from connector.cli import simulate as simulate_command

#: Subcommand modules; each exposes `register(subparsers)`, which sets `func` on its parser.
COMMANDS = [
    rules_command,
    blocks_command,
    simulate_command,
    serve_command,
    scale_command,
    ops_command,
    install_command,
    secrets_command,
    hubspot_project_command,
    identity_command,
    accounts_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcb", description="dcb-connector: dynamic content blocks for Klaviyo and HubSpot"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except BrokenPipeError:  # `dcb blocks list | head`: the reader left, which is fine
        sys.stderr.close()
        return 0
    return status
