"""The Klaviyo flow Webhook-action bodies to paste (`connector/examples/klaviyo_flows.yaml`).

One place for them: `dcb install klaviyo` prints them and docs/inbound.md shows them (a test
keeps the two equal, and parses each as Klaviyo would render it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

FLOWS_FILE = "examples/klaviyo_flows.yaml"


class FlowBodiesError(ValueError):
    """The shipped flow bodies file is broken; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class FlowAction:
    """The flow (named by its trigger metric) and the JSON body its Webhook action sends."""

    flow: str
    body: str


@cache
def flow_actions() -> tuple[FlowAction, ...]:
    """Every flow body, in the file's order; raises `FlowBodiesError` when it is broken."""
    source = f"connector/{FLOWS_FILE}"
    try:
        text = (resources.files("connector") / FLOWS_FILE).read_text("utf-8")
        data = YAML(typ="safe").load(text)
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise FlowBodiesError(f"{source}: cannot read: {exc}") from None
    flows = data.get("flows") if isinstance(data, dict) else None
    if not isinstance(flows, list) or not flows:
        raise FlowBodiesError(f"{source}: flows: must be a non-empty list")
    actions = []
    for i, entry in enumerate(flows):
        for field in ("flow", "body"):
            value = entry.get(field) if isinstance(entry, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise FlowBodiesError(f"{source}: flows[{i}].{field}: must be a non-empty string")
        actions.append(FlowAction(entry["flow"], entry["body"].strip("\n")))
    return tuple(actions)
