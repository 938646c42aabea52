"""manifest.json says what the connector installs and needs; the code must agree with it."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from connector.core.properties_schema import PROPERTY_SPECS
from connector.endpoints import build_endpoints
from connector.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def manifest() -> dict:  # type: ignore[type-arg]
    return json.loads((resources.files("connector") / "manifest.json").read_text("utf-8"))


def test_the_packaged_manifest_is_the_root_one() -> None:
    assert manifest() == json.loads((ROOT / "manifest.json").read_text("utf-8"))


def test_properties_match_what_provisioning_creates() -> None:
    declared = [
        (p["name"], p["label"], p["field_type"], p["type"]) for p in manifest()["properties"]
    ]
    assert declared == [(s.name, s.label, s.field_type, "string") for s in PROPERTY_SPECS]


def test_every_setting_the_code_reads_is_declared() -> None:
    read = set(re.findall(r'"(DCB_[A-Z_]+)"', (ROOT / "connector/settings.py").read_text()))
    declared = {s["name"] for s in manifest()["settings"]}
    assert read <= declared, read - declared


def test_every_inbound_route_is_declared() -> None:
    paths = {e["path"] for e in manifest()["endpoints"]}
    assert {e.path for e in build_endpoints(Settings())} <= paths
