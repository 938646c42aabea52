"""The full set of `dcb_*` properties a decision writes to a platform.

Every property in `PROPERTY_NAMES` is always present, as a string ("" when a block has no
such output), so a platform template never shows a value an older block left behind.
`differs` tells whether two sets differ in anything but `dcb_computed_at`, so a write that
would change nothing can be skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime

from connector.core.decisions import Decision
from connector.core.events import format_time
from connector.core.properties_schema import PROPERTY_NAMES

#: A block's named outputs, each written as `dcb_<name>`.
CONTENT_OUTPUTS: tuple[str, ...] = (
    "headline",
    "body",
    "cta_text",
    "cta_url",
    "image_url",
    "coupon",
    "html",
    "text",
)
COMPUTED_AT = "dcb_computed_at"


def build_properties(
    decision: Decision,
    outputs: Mapping[str, str],
    computed_at: datetime,
    *,
    block: str | None = None,
) -> dict[str, str]:
    """Every `dcb_*` property for `decision` with its rendered `outputs`.

    `block` names the block whose content `outputs` hold when it is not the decided one
    (the renderer fell back). `computed_at` must be timezone-aware and is written as
    ISO 8601 UTC with a `Z`. Outputs not in `CONTENT_OUTPUTS` are ignored. Raises
    `ValueError` for a naive `computed_at`.
    """
    if computed_at.tzinfo is None or computed_at.utcoffset() is None:
        raise ValueError("computed_at must be timezone-aware")
    properties = dict.fromkeys(PROPERTY_NAMES, "")
    properties["dcb_block"] = block or decision.block
    properties["dcb_rule"] = decision.rule_id or ""
    properties["dcb_ruleset_version"] = str(decision.ruleset_version)
    properties["dcb_variant"] = decision.variant.value
    for name in CONTENT_OUTPUTS:
        key = f"dcb_{name}"
        if key in properties:
            properties[key] = str(outputs.get(name, "") or "")
    properties[COMPUTED_AT] = format_time(computed_at)
    return properties


def fingerprint(properties: Mapping[str, str]) -> str:
    """A digest of every property but `dcb_computed_at`: equal exactly when `differs` is
    false, so a store can compare property sets by one string."""
    kept = sorted((k, v) for k, v in properties.items() if k != COMPUTED_AT and v != "")
    return hashlib.sha256(json.dumps(kept, separators=(",", ":")).encode()).hexdigest()


def differs(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether `a` and `b` differ in any property but `dcb_computed_at` (missing = "")."""
    for key in a.keys() | b.keys():
        if key != COMPUTED_AT and a.get(key, "") != b.get(key, ""):
            return True
    return False
