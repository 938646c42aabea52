"""The `dcb_*` properties: their names (the decision's contract) and the types that describe them.

`PROPERTY_NAMES` is what `build_properties` fills, in order: the code writes each by name,
so the names live here, beside the code that writes them. Labels, field types, the group
and descriptions are declared in manifest.json; the composition root reads them
(`connector.manifest`) and hands them to provisioning as a `PropertySchema`, and a test
proves the manifest declares exactly `PROPERTY_NAMES`, in this order. Every value written
is a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["text", "textarea", "html"]
FIELD_TYPES: tuple[FieldType, ...] = ("text", "textarea", "html")

PROPERTY_NAMES: tuple[str, ...] = (
    "dcb_block",
    "dcb_rule",
    "dcb_ruleset_version",
    "dcb_variant",
    "dcb_headline",
    "dcb_body",
    "dcb_cta_text",
    "dcb_cta_url",
    "dcb_image_url",
    "dcb_coupon",
    "dcb_html",
    "dcb_text",
    "dcb_computed_at",
)


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One property as a platform declares it (all of type string)."""

    name: str
    label: str
    field_type: FieldType
    description: str


@dataclass(frozen=True, slots=True)
class PropertySchema:
    """What provisioning creates: one group and its properties, in order."""

    group: str
    group_label: str
    properties: tuple[PropertySpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.properties)
