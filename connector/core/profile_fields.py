"""Which profile fields the connector can read from a platform, and under what names.

One table, used by both platform adapters when they fetch a profile (`ProfileSource`):
a context field (what rules read as `profile.<field>`) and the HubSpot contact property
and Klaviyo profile attribute that hold it. Any other field that is not one the connector
derives itself (`RESERVED` in `context`) is a custom attribute: the HubSpot contact
property of the same name, the Klaviyo custom property `properties.<field>`.
Order history (`purchases_90d`, `lifetime_orders`, `last_order_at`), the cart and the
session are the connector's own and never fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from connector.core.context import RESERVED


@dataclass(frozen=True, slots=True)
class PlatformNames:
    hubspot: str  # the contact property
    klaviyo: str  # the profile attribute, dotted (`location.city`)


#: Context field -> where each platform keeps it.
PROFILE_FIELDS: dict[str, PlatformNames] = {
    "city": PlatformNames("city", "location.city"),
    "country": PlatformNames("country", "location.country"),
    "region": PlatformNames("state", "location.region"),
    "zip": PlatformNames("zip", "location.zip"),
    "first_name": PlatformNames("firstname", "first_name"),
    "last_name": PlatformNames("lastname", "last_name"),
    "created_at": PlatformNames("createdate", "created"),
}
#: Fields the connector computes from a fetched one: `is_new` from the creation date.
DERIVED: dict[str, str] = {"is_new": "created_at"}


def fetchable(field: str) -> str | None:
    """The field to fetch so that `field` becomes known, or None when no platform has it."""
    field = DERIVED.get(field, field)
    if field in PROFILE_FIELDS:
        return field
    if field in RESERVED or not field or field.startswith("_"):
        return None
    return field


def fields_of(paths: Iterable[str]) -> tuple[str, ...]:
    """The fetchable fields behind rule paths (`profile.city` -> `city`), in order, once."""
    out: list[str] = []
    for path in paths:
        root, _, rest = path.partition(".")
        field = fetchable(rest.split(".")[0]) if root == "profile" and rest else None
        if field is not None and field not in out:
            out.append(field)
    return tuple(out)


def hubspot_property(field: str) -> str:
    names = PROFILE_FIELDS.get(field)
    return names.hubspot if names is not None else field


def klaviyo_attribute(field: str) -> str:
    names = PROFILE_FIELDS.get(field)
    return names.klaviyo if names is not None else f"properties.{field}"
