"""The `dcb_*` properties the connector writes, declared once.

HubSpot provisioning creates one contact property per entry (in the `dcb` group, all of
type "string"); Klaviyo needs no declaration but receives the same names. Every value
written is a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["text", "textarea", "html"]

PROPERTY_GROUP = "dcb"
PROPERTY_GROUP_LABEL = "Dynamic content blocks"


@dataclass(frozen=True, slots=True)
class PropertySpec:
    name: str
    label: str
    field_type: FieldType
    description: str


PROPERTY_SPECS: tuple[PropertySpec, ...] = (
    PropertySpec("dcb_block", "DCB block", "text", "Which content block was decided."),
    PropertySpec("dcb_rule", "DCB rule", "text", "The rule that chose the block."),
    PropertySpec(
        "dcb_ruleset_version", "DCB ruleset version", "text", "Version of the rule set used."
    ),
    PropertySpec("dcb_variant", "DCB variant", "text", "Treatment or holdout."),
    PropertySpec("dcb_headline", "DCB headline", "text", "The block's headline, plain text."),
    PropertySpec("dcb_body", "DCB body", "textarea", "The block's body, plain text."),
    PropertySpec("dcb_cta_text", "DCB CTA text", "text", "Call-to-action label."),
    PropertySpec("dcb_cta_url", "DCB CTA URL", "text", "Call-to-action link."),
    PropertySpec("dcb_image_url", "DCB image URL", "text", "Image to show with the block."),
    PropertySpec("dcb_coupon", "DCB coupon", "text", "Coupon code, if the block has one."),
    PropertySpec("dcb_html", "DCB HTML", "html", "The whole block rendered as HTML."),
    PropertySpec("dcb_text", "DCB text", "textarea", "The whole block rendered as plain text."),
    PropertySpec("dcb_computed_at", "DCB computed at", "text", "When it was decided (ISO 8601)."),
)

PROPERTY_NAMES: tuple[str, ...] = tuple(spec.name for spec in PROPERTY_SPECS)
