"""`dcb hubspot project PATH`: the public app as a HubSpot developer-platform project.

Writes, from manifest.json and `DCB_PUBLIC_URL` (or `--public-url`), a project for
platform version 2025.2 that `hs project upload` deploys:

- `hsproject.json`: name, `srcDir`, `platformVersion`;
- `src/app/app-hsmeta.json`: the app (`auth.type` oauth, the install's redirect URL, the
  manifest's scopes as required scopes);
- `src/app/webhooks/webhooks-hsmeta.json`: the webhook target URL and the manifest's
  subscriptions (HubSpot's `contact.*` types under `legacyCrmObjects`, privacy deletion
  under `hubEvents`).

Running it again with the same inputs changes nothing; a different existing project is
left alone unless `--force` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from connector.manifest import Manifest, Subscription, load_manifest
from connector.settings import Settings, SettingsError

PLATFORM_VERSION = "2025.2"
APP_UID = "dcb_connector_app"
WEBHOOKS_UID = "dcb_connector_webhooks"
CALLBACK_PATH = "/oauth/hubspot/callback"
WEBHOOK_PATH = "/webhooks/hubspot"
MAX_CONCURRENT_REQUESTS = 10
#: Subscription types HubSpot files under `hubEvents` rather than the CRM object lists.
HUB_EVENTS = frozenset({"contact.privacyDeletion"})


def register(subparsers: Any) -> None:
    hubspot = subparsers.add_parser("hubspot", help="the public HubSpot app")
    actions = hubspot.add_subparsers(dest="action", required=True, metavar="ACTION")
    project = actions.add_parser(
        "project", help="write the app as a HubSpot developer-platform project (2025.2)"
    )
    project.add_argument("path", type=Path, metavar="PATH", help="the project's folder")
    project.add_argument(
        "--public-url", help="the connector's public base URL (default: DCB_PUBLIC_URL)"
    )
    project.add_argument("--name", default=None, help="the app's name (default: the manifest's)")
    project.add_argument(
        "--force", action="store_true", help="overwrite a different existing project"
    )
    project.set_defaults(func=run_project)


def project_files(manifest: Manifest, public_url: str, name: str | None = None) -> dict[str, Any]:
    """Each file of the project (path relative to the project folder) and its JSON."""
    base = public_url.rstrip("/")
    app_name = name or manifest.name
    return {
        "hsproject.json": {
            "name": app_name,
            "srcDir": "src",
            "platformVersion": PLATFORM_VERSION,
        },
        "src/app/app-hsmeta.json": {
            "uid": APP_UID,
            "type": "app",
            "config": {
                "name": app_name,
                "description": manifest.description,
                "distribution": "marketplace",
                "auth": {
                    "type": "oauth",
                    "redirectUrls": [base + CALLBACK_PATH],
                    "requiredScopes": list(manifest.hubspot.scopes),
                    "optionalScopes": [],
                    "conditionallyRequiredScopes": [],
                },
                "permittedUrls": {"fetch": [], "iframe": [], "img": []},
            },
        },
        "src/app/webhooks/webhooks-hsmeta.json": {
            "uid": WEBHOOKS_UID,
            "type": "webhooks",
            "config": {
                "settings": {
                    "targetUrl": base + WEBHOOK_PATH,
                    "maxConcurrentRequests": MAX_CONCURRENT_REQUESTS,
                },
                "subscriptions": _subscriptions(manifest.hubspot.webhook_subscriptions),
            },
        },
    }


def _subscriptions(subscriptions: tuple[Subscription, ...]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {
        "crmObjects": [],
        "legacyCrmObjects": [],
        "hubEvents": [],
    }
    for sub in subscriptions:
        entry: dict[str, Any] = {"subscriptionType": sub.subscription_type}
        if sub.subscription_type.startswith("object."):
            entry["objectType"] = sub.object_type
            group = "crmObjects"
        else:
            group = "hubEvents" if sub.subscription_type in HUB_EVENTS else "legacyCrmObjects"
        if sub.property_name:
            entry["propertyName"] = sub.property_name
        entry["active"] = True
        grouped[group].append(entry)
    return grouped


def write_project(path: Path, files: dict[str, Any], force: bool) -> list[str]:
    """Write the files under `path`; raises `FileExistsError` naming a file that differs
    (without `force`), before writing anything. Returns the files written."""
    texts = {rel: json.dumps(body, indent=2) + "\n" for rel, body in files.items()}
    if not force:
        for rel, text in texts.items():
            target = path / rel
            if target.exists() and target.read_text("utf-8") != text:
                raise FileExistsError(
                    f"{target} exists and differs: another project is there (use --force "
                    "to overwrite it)"
                )
    written = []
    for rel, text in texts.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text("utf-8") != text:
            target.write_text(text, "utf-8")
            written.append(rel)
    return written


def run_project(args: argparse.Namespace) -> int:
    public_url = args.public_url
    if public_url is None:
        try:
            public_url = Settings.from_env(os.environ).public_url
        except SettingsError as exc:
            print(exc, file=sys.stderr)
            return 1
    if not public_url or not public_url.startswith(("https://", "http://")):
        print(
            "dcb hubspot project: set DCB_PUBLIC_URL (or --public-url) to the connector's "
            "public https URL: HubSpot calls it",
            file=sys.stderr,
        )
        return 1
    try:
        written = write_project(args.path, project_files(load_manifest(), public_url, args.name),
                                args.force)
    except (FileExistsError, OSError) as exc:
        print(f"dcb hubspot project: {exc}", file=sys.stderr)
        return 1
    for rel in written:
        print(f"wrote {args.path / rel}")
    if not written:
        print(f"{args.path}: the project is up to date")
    print(f"next: cd {args.path} && hs project upload")
    return 0
