"""manifest.json, the connector's declaration, loaded and validated once.

The manifest (at the repository root, shipped in the package as `connector/manifest.json`)
declares the connector's name and version, its inbound endpoints, per platform the scopes
and webhook subscriptions, the `dcb_*` properties it writes and the settings it reads.
Code that needs any of these reads them here instead of repeating them:

- `load_manifest()`: the packaged manifest as a typed `Manifest` (read once, cached).
- `parse_manifest(data, source)`: the same from an already decoded document.

A broken manifest raises `ManifestError`, whose message names the file and the field
(`manifest.json: properties[3].field_type: must be one of text, textarea, html`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NoReturn

from connector.core.properties_schema import (
    FIELD_TYPES,
    PropertySchema,
    PropertySpec,
)

MANIFEST_FILE = "manifest.json"
SETTING_TYPES = ("path", "url", "string", "list", "integer", "boolean", "mapping", "duration")


class ManifestError(ValueError):
    """The manifest is unreadable or breaks its shape; the message names file and field."""


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    method: str
    path: str
    purpose: str
    auth: str


@dataclass(frozen=True, slots=True)
class SettingSpec:
    name: str
    type: str
    default: str | int | bool | None
    secret: bool


@dataclass(frozen=True, slots=True)
class Subscription:
    """A HubSpot webhook subscription the app should have."""

    subscription_type: str
    object_type: str
    property_name: str | None = None


@dataclass(frozen=True, slots=True)
class HubSpotManifest:
    scopes: tuple[str, ...]
    webhook_subscriptions: tuple[Subscription, ...]
    property_group: str
    property_group_label: str


@dataclass(frozen=True, slots=True)
class KlaviyoManifest:
    scopes: tuple[str, ...]
    flow_metrics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    description: str
    endpoints: tuple[EndpointSpec, ...]
    hubspot: HubSpotManifest
    klaviyo: KlaviyoManifest
    properties: tuple[PropertySpec, ...]
    settings: tuple[SettingSpec, ...]

    @property
    def property_schema(self) -> PropertySchema:
        """The HubSpot group and every property, for provisioning."""
        return PropertySchema(
            self.hubspot.property_group, self.hubspot.property_group_label, self.properties
        )

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.properties)

    def endpoint(self, path: str) -> EndpointSpec:
        """The endpoint declared at `path`; raises `KeyError` when there is none."""
        for spec in self.endpoints:
            if spec.path == path:
                return spec
        raise KeyError(path)

    def setting(self, name: str) -> SettingSpec:
        """The setting called `name`; raises `KeyError` when there is none."""
        for spec in self.settings:
            if spec.name == name:
                return spec
        raise KeyError(name)


@cache
def load_manifest() -> Manifest:
    """The packaged manifest; raises `ManifestError` naming the field that is wrong."""
    try:
        text = (resources.files("connector") / MANIFEST_FILE).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{MANIFEST_FILE}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{MANIFEST_FILE}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    return parse_manifest(data, MANIFEST_FILE)


def parse_manifest(data: Any, source: str = MANIFEST_FILE) -> Manifest:
    """A typed `Manifest` from decoded JSON; raises `ManifestError` naming `source` and field."""
    top = _Node(data, source, "")
    platforms = top.mapping("platforms")
    hubspot, klaviyo = platforms.mapping("hubspot"), platforms.mapping("klaviyo")
    group = hubspot.mapping("property_group")
    manifest = Manifest(
        name=top.text("name"),
        version=top.text("version"),
        description=top.text("description"),
        endpoints=tuple(_endpoint(node) for node in top.items("endpoints")),
        hubspot=HubSpotManifest(
            scopes=hubspot.texts("scopes"),
            webhook_subscriptions=tuple(
                _subscription(node) for node in hubspot.items("webhook_subscriptions")
            ),
            property_group=group.text("name"),
            property_group_label=group.text("label"),
        ),
        klaviyo=KlaviyoManifest(
            scopes=klaviyo.texts("scopes"), flow_metrics=klaviyo.texts("flow_metrics")
        ),
        properties=tuple(_property(node, group.text("name")) for node in top.items("properties")),
        settings=tuple(_setting(node) for node in top.items("settings")),
    )
    _unique(top, "properties", [p.name for p in manifest.properties])
    _unique(top, "settings", [s.name for s in manifest.settings])
    _unique(top, "endpoints", [e.path for e in manifest.endpoints])
    return manifest


def _endpoint(node: _Node) -> EndpointSpec:
    return EndpointSpec(node.text("method"), node.text("path"), node.text("for"), node.text("auth"))


def _subscription(node: _Node) -> Subscription:
    return Subscription(
        node.text("subscriptionType"), node.text("objectType"), node.optional_text("propertyName")
    )


def _property(node: _Node, group: str) -> PropertySpec:
    name = node.text("name")
    if not name.startswith("dcb_"):
        node.fail("name", f"must start with dcb_, got {name!r}")
    if node.text("type") != "string":
        node.fail("type", "must be string (every value written is a string)")
    if node.text("group") != group:
        node.fail("group", f"must be the HubSpot property group {group!r}")
    field_type = node.text("field_type")
    if field_type not in FIELD_TYPES:
        node.fail("field_type", f"must be one of {', '.join(FIELD_TYPES)}, got {field_type!r}")
    return PropertySpec(name, node.text("label"), field_type, node.text("description"))


def _setting(node: _Node) -> SettingSpec:
    kind = node.text("type")
    if kind not in SETTING_TYPES:
        node.fail("type", f"must be one of {', '.join(SETTING_TYPES)}, got {kind!r}")
    default = node.get("default")
    if default is not None and not isinstance(default, str | int | bool):
        node.fail("default", "must be a string, a number, true/false or null")
    secret = node.get("secret")
    if not isinstance(secret, bool):
        node.fail("secret", "must be true or false")
    return SettingSpec(node.text("name"), kind, default, secret)


def _unique(node: _Node, field: str, keys: Sequence[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            node.fail(field, f"{key!r} is declared twice")
        seen.add(key)


class _Node:
    """One JSON object in the manifest, with where it is (`properties[3]`) for errors."""

    def __init__(self, value: Any, source: str, where: str) -> None:
        if not isinstance(value, Mapping):
            raise ManifestError(f"{source}: {where or 'top level'}: must be an object")
        self._value = value
        self._source = source
        self._where = where

    def _path(self, field: str) -> str:
        return f"{self._where}.{field}" if self._where else field

    def fail(self, field: str, reason: str) -> NoReturn:
        raise ManifestError(f"{self._source}: {self._path(field)}: {reason}")

    def get(self, field: str) -> Any:
        if field not in self._value:
            self.fail(field, "is missing")
        return self._value[field]

    def text(self, field: str) -> str:
        value = self.get(field)
        if not isinstance(value, str) or not value.strip():
            self.fail(field, "must be a non-empty string")
        return value

    def optional_text(self, field: str) -> str | None:
        return self.text(field) if field in self._value else None

    def texts(self, field: str) -> tuple[str, ...]:
        value = self.get(field)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(field, "must be a list of non-empty strings")
        return tuple(value)

    def mapping(self, field: str) -> _Node:
        return _Node(self.get(field), self._source, self._path(field))

    def items(self, field: str) -> list[_Node]:
        value = self.get(field)
        if not isinstance(value, list):
            self.fail(field, "must be a list")
        return [
            _Node(item, self._source, f"{self._path(field)}[{i}]") for i, item in enumerate(value)
        ]
