"""`dcb hubspot project PATH`: the developer-platform project's files and their fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.cli import main
from connector.manifest import load_manifest

PUBLIC = "https://hooks.shop.example"


def read(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text("utf-8"))  # type: ignore[no-any-return]


def test_the_project_is_built_from_the_manifest(tmp_path: Path) -> None:
    assert main(["hubspot", "project", str(tmp_path), "--public-url", PUBLIC + "/"]) == 0
    manifest = load_manifest()
    project = read(tmp_path / "hsproject.json")
    assert project == {"name": "dcb-connector", "srcDir": "src", "platformVersion": "2025.2"}
    app = read(tmp_path / "src/app/app-hsmeta.json")
    assert app["type"] == "app" and app["uid"]
    config = app["config"]
    assert config["name"] == "dcb-connector"
    assert config["description"] == manifest.description
    assert config["distribution"] == "marketplace"
    assert config["auth"]["type"] == "oauth"
    assert config["auth"]["redirectUrls"] == [PUBLIC + "/oauth/hubspot/callback"]
    assert config["auth"]["requiredScopes"] == list(manifest.hubspot.scopes)
    webhooks = read(tmp_path / "src/app/webhooks/webhooks-hsmeta.json")
    assert webhooks["type"] == "webhooks" and webhooks["uid"] != app["uid"]
    settings = webhooks["config"]["settings"]
    assert settings["targetUrl"] == PUBLIC + "/webhooks/hubspot"
    assert settings["maxConcurrentRequests"] >= 1
    subscriptions = webhooks["config"]["subscriptions"]
    legacy = subscriptions["legacyCrmObjects"]
    assert {"subscriptionType": "contact.creation", "active": True} in legacy
    assert {"subscriptionType": "contact.propertyChange", "propertyName": "cart_value",
            "active": True} in legacy
    assert {"subscriptionType": "contact.deletion", "active": True} in legacy
    assert subscriptions["hubEvents"] == [
        {"subscriptionType": "contact.privacyDeletion", "active": True}
    ]
    declared = {(s.subscription_type, s.property_name)
                for s in manifest.hubspot.webhook_subscriptions}
    written = {(s["subscriptionType"], s.get("propertyName"))
               for group in subscriptions.values() for s in group}
    assert written == declared


def test_again_is_a_no_op_and_a_different_project_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hubspot", "project", str(tmp_path), "--public-url", PUBLIC]) == 0
    assert main(["hubspot", "project", str(tmp_path), "--public-url", PUBLIC]) == 0
    assert "up to date" in capsys.readouterr().out
    other = "https://elsewhere.example"
    assert main(["hubspot", "project", str(tmp_path), "--public-url", other]) == 1
    err = capsys.readouterr().err
    assert "app-hsmeta.json exists and differs" in err and "--force" in err
    assert read(tmp_path / "src/app/app-hsmeta.json")["config"]["auth"]["redirectUrls"] == [
        PUBLIC + "/oauth/hubspot/callback"
    ]
    assert main(["hubspot", "project", str(tmp_path), "--public-url", other, "--force"]) == 0
    assert read(tmp_path / "src/app/webhooks/webhooks-hsmeta.json")["config"]["settings"][
        "targetUrl"
    ] == other + "/webhooks/hubspot"


def test_a_public_url_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DCB_PUBLIC_URL", raising=False)
    assert main(["hubspot", "project", str(tmp_path)]) == 1
    assert "DCB_PUBLIC_URL" in capsys.readouterr().err
    assert not (tmp_path / "hsproject.json").exists()
