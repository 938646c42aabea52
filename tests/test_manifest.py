"""manifest.json says what the connector installs and needs; the code must agree with it."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from connector.bootstrap import build_service
from connector.core.properties_schema import PROPERTY_NAMES
from connector.endpoints import build_endpoints
from connector.manifest import ManifestError, load_manifest, parse_manifest
from connector.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (resources.files("connector") / "manifest.json").read_text("utf-8")
    )
    return data


def test_the_packaged_manifest_is_the_root_one() -> None:
    assert manifest() == json.loads((ROOT / "manifest.json").read_text("utf-8"))


def test_the_manifest_loads_into_typed_views() -> None:
    loaded = load_manifest()
    assert loaded.name == "dcb-connector"
    assert loaded.property_schema.group == "dcb"
    assert "crm.schemas.contacts.write" in loaded.hubspot.scopes
    assert "webhooks:write" in loaded.klaviyo.scopes
    assert loaded.endpoint("/webhooks/klaviyo/flow").auth == "X-DCB-Token"
    assert loaded.setting("DCB_KLAVIYO_FLOW_TOKEN").secret


def test_the_decision_writes_exactly_the_declared_properties_in_order() -> None:
    assert load_manifest().property_names == PROPERTY_NAMES


def test_the_version_is_the_package_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    match = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert match is not None and load_manifest().version == match.group(1)


def test_every_setting_the_code_reads_is_declared() -> None:
    read = set(re.findall(r'"(DCB_[A-Z_]+)"', (ROOT / "connector/settings.py").read_text()))
    declared = {s["name"] for s in manifest()["settings"]}
    assert read <= declared, read - declared


def test_every_inbound_route_is_declared() -> None:
    paths = {e["path"] for e in manifest()["endpoints"]}
    assert {e.path for e in build_endpoints(Settings())} <= paths


def test_every_route_the_app_serves_is_declared(tmp_path: Path) -> None:
    service = build_service(Settings(data_dir=tmp_path), workers=0)
    try:
        served = {
            (method, re.sub(r"<\w+:", "<", rule.rule))  # `<path:id>` is declared `<id>`
            for rule in service.app.url_map.iter_rules()
            if rule.endpoint != "static"
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
        }
    finally:
        service.app.extensions["dcb"]["store"].close()
    declared = {(e["method"], e["path"]) for e in manifest()["endpoints"]}
    assert served <= declared, served - declared


def test_declared_defaults_are_the_settings_defaults() -> None:
    defaults = Settings()
    loaded = load_manifest()
    assert loaded.setting("DCB_HUBSPOT_API_URL").default == defaults.hubspot_api_url
    assert loaded.setting("DCB_KLAVIYO_API_URL").default == defaults.klaviyo_api_url
    assert loaded.setting("DCB_HUBSPOT_RATE").default == defaults.hubspot_rate
    assert loaded.setting("DCB_FLUSH_MS").default == defaults.flush_ms
    assert loaded.setting("DCB_QUEUE_LIMIT").default == defaults.queue_limit
    assert loaded.setting("DCB_LOG_LEVEL").default == defaults.log_level
    assert loaded.setting("DCB_BROWSER_RATE_PER_KEY").default == defaults.browser_rate_per_key
    assert (
        loaded.setting("DCB_BROWSER_RATE_PER_ADDRESS").default == defaults.browser_rate_per_address
    )
    assert (
        loaded.setting("DCB_BROWSER_RATE_PER_BROWSER").default == defaults.browser_rate_per_browser
    )
    assert loaded.setting("DCB_IDENTITY_SECRET").secret
    assert loaded.setting("DCB_PULL_CACHE_SIZE").default == defaults.pull_cache_size
    assert loaded.setting("DCB_PULL_BUDGET_MS").default == defaults.pull_budget_ms
    assert Settings.from_env(
        {"DCB_PULL_MAX_AGE": str(loaded.setting("DCB_PULL_MAX_AGE").default),
         "DCB_PULL_CACHE_TTL": str(loaded.setting("DCB_PULL_CACHE_TTL").default)}
    ) == defaults


def broken(edit: str, value: Any) -> dict[str, Any]:
    """The manifest with the field at dotted path `edit` set to `value` (or removed)."""
    data = copy.deepcopy(manifest())
    *parents, last = edit.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return data


@pytest.mark.parametrize(
    ("edit", "value", "message"),
    [
        ("name", ..., "manifest.json: name: is missing"),
        ("properties.5.field_type", "rich", "manifest.json: properties[5].field_type: must be"),
        ("properties.0.type", "number", "manifest.json: properties[0].type: must be string"),
        ("properties.1.name", "headline", "manifest.json: properties[1].name: must start"),
        ("properties.1.name", "dcb_block", "manifest.json: properties: 'dcb_block' is declared"),
        ("properties.2.group", "other", "manifest.json: properties[2].group: must be"),
        ("platforms.hubspot.scopes", "oauth", "manifest.json: platforms.hubspot.scopes: must be"),
        (
            "platforms.hubspot.webhook_subscriptions.0",
            [],
            "manifest.json: platforms.hubspot.webhook_subscriptions[0]: must be an object",
        ),
        ("settings.3.secret", "no", "manifest.json: settings[3].secret: must be true or false"),
        ("endpoints.0.path", 7, "manifest.json: endpoints[0].path: must be a non-empty string"),
    ],
)
def test_a_broken_manifest_names_the_file_and_field(edit: str, value: Any, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(broken(edit, value), "manifest.json")
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_manifest_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ManifestError, match=r"^x.json: top level: must be an object$"):
        parse_manifest([], "x.json")


def test_the_oauth_install_routes_are_declared() -> None:
    from webhooks.oauth import CALLBACK_PATH, START_PATH

    declared = {e.path: e for e in load_manifest().endpoints}
    assert declared[START_PATH].method == declared[CALLBACK_PATH].method == "GET"
