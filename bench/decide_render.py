"""Throughput and latency of fold + decide + render + properties, next to bare Jinja2.

Runs the shipped example rule set and block library over a realistic mix of 10,000 events
for 1,000 shoppers (views, cart updates, checkouts, abandons, orders, back-in-stock alerts,
sign-ups and sessions), one at a time on one core, and prints decisions per second with
p50/p99 latency. In the same run it renders the same decided blocks' outputs with a bare
`jinja2.Environment` (no sandbox, no limits, no cleaning) from the same templates and
inputs, so the cost of the safety can be read directly.

    python bench/decide_render.py [--events 10000] [--seed 7]

Targets on one core: p99 <= 0.5 ms, >= 5,000 decisions/s, <= 3x the bare render.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import ChainableUndefined, Environment, Template

from blocks.declarations import library_files, parse_block_documents
from blocks.loading import load_library
from blocks.templates import COMPOSED_OUTPUTS, PLAIN_OUTPUTS
from blocks.views import DataView, event_view, view
from connector.core.context import fold
from connector.core.context import view as profile_view
from connector.core.events import Event, parse_event
from connector.core.properties import build_properties
from connector.core.rules import decide, load_ruleset
from connector.rulesets import EXAMPLE_SOURCE, example_text

START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CITIES = ["New York", "NYC", "Boston", "Chicago", "Austin", None]
PRODUCTS = [
    ("J-1", "Wool jacket", 200.0),
    ("S-2", "Silk scarf", 45.0),
    ("B-3", "Blender", 89.0),
    ("T-4", "Trail shoes", 130.0),
    ("M-5", "Coffee mug", 14.5),
]
MIX = [
    ("product_viewed", 30),
    ("cart_updated", 20),
    ("checkout_started", 12),
    ("cart_abandoned", 8),
    ("order_placed", 8),
    ("back_in_stock", 5),
    ("profile_created", 5),
    ("session_started", 12),
]


def _item(rng: random.Random) -> dict[str, Any]:
    pid, name, price = rng.choice(PRODUCTS)
    return {
        "product_id": pid,
        "name": name,
        "price": price,
        "quantity": rng.randint(1, 3),
        "image_url": f"https://shop.example/i/{pid}.jpg",
        "url": f"https://shop.example/p/{pid}",
    }


def make_events(count: int, seed: int) -> list[Event]:
    """`count` events in time order for 1,000 shoppers, in the proportions of `MIX`."""
    rng = random.Random(seed)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    events: list[Event] = []
    for n in range(count):
        kind = rng.choice(kinds)
        shopper = rng.randrange(1_000)
        items = [_item(rng) for _ in range(rng.randint(1, 3))]
        value = sum(i["price"] * i["quantity"] for i in items)
        properties: dict[str, Any] = {}
        if kind in ("cart_updated", "checkout_started", "cart_abandoned"):
            properties = {"cart_value": value, "currency": "USD", "items": items,
                          "checkout_url": f"https://shop.example/cart/{shopper}"}  # fmt: skip
        elif kind == "order_placed":
            properties = {"order_id": f"o-{n}", "value": value, "currency": "USD", "items": items}
        elif kind in ("product_viewed", "back_in_stock"):
            item = items[0]
            properties = {k: item[k] for k in ("product_id", "name", "price", "url", "image_url")}
            properties["variant"] = rng.choice(["S", "M", "L"])
        city = rng.choice(CITIES)
        context: dict[str, Any] = {"logged_in": rng.random() < 0.6}
        if city:
            context["city"] = city
        raw = {"type": kind, "event_id": f"e-{n}", "profile": {"email": f"s{shopper}@ex.com"},
               "occurred_at": (START + timedelta(seconds=30 * n)).isoformat(),
               "properties": properties, "context": context}  # fmt: skip
        events.append(parse_event(raw, received_at=START))
    return events


def bare_templates() -> dict[str, dict[str, Template]]:
    """The shipped blocks' output templates in a plain Jinja2 environment."""
    options: dict[str, Any] = {
        "trim_blocks": True,
        "lstrip_blocks": True,
        "undefined": ChainableUndefined,
    }
    plain = Environment(**options)
    html = Environment(**options, autoescape=True)
    compiled: dict[str, dict[str, Template]] = {}
    for block_id, (_, document) in parse_block_documents(library_files()).items():
        outputs = document.get("outputs") or {}
        compiled[block_id] = {
            name: (html if name == "html" else plain).from_string(str(text))
            for name, text in outputs.items()
        }
    return compiled


def bare_render(templates: Mapping[str, Template], variables: dict[str, Any]) -> dict[str, str]:
    outputs = {n: templates[n].render(variables) for n in PLAIN_OUTPUTS if n in templates}
    composed = {**variables, "outputs": DataView(outputs)}
    outputs.update({n: templates[n].render(composed) for n in COMPOSED_OUTPUTS if n in templates})
    return outputs


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def timed(samples: list[float]) -> str:
    ordered = sorted(samples)
    total = sum(samples)
    return (
        f"{len(samples) / total:>9,.0f}/s  p50 {percentile(ordered, 0.50) * 1e3:.3f} ms  "
        f"p99 {percentile(ordered, 0.99) * 1e3:.3f} ms  "
        f"mean {statistics.fmean(samples) * 1e3:.3f} ms"
    )


def run(count: int, seed: int) -> None:
    library = load_library()
    ruleset = load_ruleset(example_text(), EXAMPLE_SOURCE, library.catalogue)
    renderer = library.renderer
    bare = bare_templates()
    events = make_events(count, seed)
    contexts: dict[str, dict[str, Any]] = {}
    full: list[float] = []
    render_only: list[float] = []
    bare_only: list[float] = []
    fell_back = 0
    blocks: dict[str, int] = {}
    clock = time.perf_counter
    for event in events:
        key = event.profile.first()[1]
        now = event.occurred_at
        started = clock()
        context = fold(contexts.get(key), event)
        decision = decide(ruleset, event, context, now)
        profile = profile_view(context, now, new_for=ruleset.new_for)
        rendering = clock()
        rendered = renderer.render(decision.block, decision.params, event, profile)
        rendered_at = clock()
        build_properties(decision, rendered.outputs, now, block=rendered.block_id)
        finished = clock()
        full.append(finished - started)
        render_only.append(rendered_at - rendering)
        contexts[key] = context
        fell_back += rendered.fell_back
        blocks[rendered.block_id] = blocks.get(rendered.block_id, 0) + 1
        spec = library.catalogue[decision.block]
        variables = {"event": event_view(event), "profile": view(profile),
                     "params": view(spec.resolve(decision.params))}  # fmt: skip
        bare_started = clock()
        bare_render(bare[decision.block], variables)
        bare_only.append(clock() - bare_started)
    print(f"{count:,} events, {len(contexts):,} profiles, {fell_back} fell back")
    print("blocks: " + ", ".join(f"{b} {n}" for b, n in sorted(blocks.items())))
    print(f"fold+decide+render+properties  {timed(full)}")
    print(f"  sandboxed render alone       {timed(render_only)}")
    print(f"  bare Jinja2 render           {timed(bare_only)}")
    bare_mean = statistics.fmean(bare_only)
    print(f"sandboxed render / bare render: {statistics.fmean(render_only) / bare_mean:.2f}x")
    print(f"full pipeline / bare render:    {statistics.fmean(full) / bare_mean:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    run(args.events, args.seed)


if __name__ == "__main__":
    main()
