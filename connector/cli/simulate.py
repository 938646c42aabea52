"""`dcb simulate EVENT.json [--rules FILE] [--profile PROFILE.json] [--now ISO] [--explain]
[--json]`: what the connector would decide and write for one event.

PROFILE.json is the profile before the event, written the way rules read it
(`{"is_new": false, "purchases_90d": 4, "city": "NYC"}`) or as a stored context; the event
is folded in, the rules decide, the block is rendered and every `dcb_*` property printed.
`--explain` adds the trace. With `--json`, stdout holds exactly one JSON document
(`decision`, `render`, `properties`, `trace`); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.cli.blocks import InputError, library_for, print_outputs, read_event, read_object
from connector.core.context import RESERVED, fold, view
from connector.core.decisions import Decision
from connector.core.documents import DocumentError
from connector.core.events import EventError, format_time, parse_time
from connector.core.properties import build_properties
from connector.core.rules import decide
from connector.rulesets import EXAMPLE_SOURCE, load_ruleset_file

#: Keys that only a stored context (as the connector keeps it) has.
STORED_CONTEXT_KEYS = frozenset({"stamps", "seen_events", "purchases_by_day", "orders_known"})
#: Profile fields a stored context keeps under the same name.
DIRECT_FIELDS = RESERVED - {"is_new", "purchases_90d", "identifiers"}


def register(subparsers: Any) -> None:
    simulate = subparsers.add_parser(
        "simulate", help="decide and render for one event, printing every property"
    )
    simulate.add_argument("event", type=Path, metavar="EVENT.json")
    simulate.add_argument("--rules", type=Path, default=None, help="rule set (default: DCB_RULES)")
    simulate.add_argument("--profile", type=Path, default=None, help="profile before the event")
    simulate.add_argument("--now", default=None, help="the moment to decide at (ISO 8601)")
    simulate.add_argument("--explain", action="store_true", help="show every rule and condition")
    simulate.add_argument("--json", action="store_true", help="print one JSON document")
    simulate.add_argument("--blocks", type=Path, default=None, help="extra blocks folder")
    simulate.set_defaults(func=run)


def stored_context(profile: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A stored context whose view shows `profile` as written.

    A stored context (it has bookkeeping keys such as `stamps`) is used as it is. Otherwise
    `purchases_90d` becomes that many orders today, `is_new` a creation time now (or long
    ago), known fields are kept and anything else becomes a custom attribute.
    """
    if STORED_CONTEXT_KEYS & profile.keys():
        return dict(profile)
    context: dict[str, Any] = {k: v for k, v in profile.items() if k in DIRECT_FIELDS}
    attributes = {k: v for k, v in profile.items() if k not in RESERVED}
    if attributes:
        context["attributes"] = attributes
    if isinstance(profile.get("identifiers"), Mapping):
        context["identifiers"] = dict(profile["identifiers"])
    purchases = profile.get("purchases_90d")
    if isinstance(purchases, int) and not isinstance(purchases, bool):
        context["orders_known"] = True
        context["purchases_by_day"] = {now.date().isoformat(): purchases} if purchases else {}
        context.setdefault("lifetime_orders", purchases)
    if "is_new" in profile and "created_at" not in profile:
        if profile["is_new"] is True:
            context["created_at"] = format_time(now)
            context["lifetime_orders"] = 0
        else:
            context["created_at"] = format_time(now - timedelta(days=3650))
    return context


def run(args: argparse.Namespace) -> int:
    try:
        now = _now(args.now)
        library = library_for(args.blocks)
        rules_path = args.rules or (Path(p) if (p := os.environ.get("DCB_RULES")) else None)
        ruleset = load_ruleset_file(rules_path, library.catalogue)
        event = read_event(args.event, now)
        given = read_object(args.profile) if args.profile else {}
    except (DocumentError, InputError) as exc:
        print(exc, file=sys.stderr)
        return 1
    context = fold(stored_context(given, now), event)
    decision = decide(ruleset, event, context, now)
    profile = view(context, now, new_for=ruleset.new_for)
    rendered = library.renderer.render(decision.block, decision.params, event, profile)
    properties = build_properties(decision, rendered.outputs, now, block=rendered.block_id)
    source = str(rules_path or EXAMPLE_SOURCE)
    if args.json:
        document = {
            "decision": _decision_json(decision, source),
            "render": {
                "block": rendered.block_id,
                "fell_back": rendered.fell_back,
                "error": rendered.error,
            },  # fmt: skip
            "properties": properties,
            "trace": decision.trace.to_json(),
        }
        print(json.dumps(document, ensure_ascii=False, indent=2, default=str))
        return 0
    _print_decision(decision, source)
    if rendered.fell_back:
        print(f"render: {decision.block} failed, showing {rendered.block_id}: {rendered.error}")
    print("properties:")
    print_outputs(properties, prefix="  ")
    if args.explain:
        print("trace:")
        for line in decision.trace.lines():
            print(f"  {line}")
    return 0


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_time(text, "--now")
    except EventError as exc:
        raise InputError(str(exc)) from None


def _decision_json(decision: Decision, source: str) -> dict[str, Any]:
    return {
        "outcome": decision.outcome.value,
        "block": decision.block,
        "params": dict(decision.params),
        "rule": decision.rule_id,
        "ruleset": decision.ruleset,
        "ruleset_version": decision.ruleset_version,
        "ruleset_source": source,
        "variant": decision.variant.value,
    }


def _print_decision(decision: Decision, source: str) -> None:
    params = json.dumps(dict(decision.params), ensure_ascii=False, default=str)
    how = f"rule {decision.rule_id}" if decision.rule_id else decision.outcome.value
    print(f"rule set: {decision.ruleset} v{decision.ruleset_version} ({source})")
    print(f"decision: {how} -> {decision.block} {params} [{decision.variant.value}]")
