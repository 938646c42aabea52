"""`dcb install hubspot|klaviyo`: connect one account, idempotently, and say what to add by hand.

- `dcb install hubspot [--token-env VAR]`: creates the `dcb` property group and every
  `dcb_*` contact property the manifest declares that is missing (the group creation is
  the proof that the token works and may write schemas), reports a property of the wrong
  type, and prints the webhook target URL and the subscriptions to add.
- `dcb install klaviyo [--key-env VAR]`: proves the key with one cheap read, registers the
  system webhook where the account may have one, and prints the flow Webhook action to add
  to each flow: URL, `X-DCB-Token` header and the JSON body.

Both read the other settings (`DCB_PUBLIC_URL`, `DCB_*_API_URL` ...) from the environment.
Exit status 0 when the account is ready, else 1 with one clear message on stderr. No
secret from the environment is ever printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from adapters.klaviyo.webhooks import (
    KlaviyoWebhooks,
    Registration,
    WebhookRegistration,
    webhooks_throttle,
)
from connector.clients import hubspot_client, klaviyo_client
from connector.core.pauses import Pauses
from connector.core.ports import ProvisionReport
from connector.flow_bodies import FlowBodiesError, flow_actions
from connector.manifest import Manifest, ManifestError, Subscription, load_manifest
from connector.runtime import Runtime
from connector.settings import Settings, SettingsError

HUBSPOT_WEBHOOK_PATH = "/webhooks/hubspot"
KLAVIYO_WEBHOOK_PATH = "/webhooks/klaviyo"
KLAVIYO_FLOW_PATH = "/webhooks/klaviyo/flow"
PLACEHOLDER = "https://YOUR-PUBLIC-HOST"
NEW_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class InstallError(Exception):
    """The install cannot go on; the message says why and never holds a secret."""


def register(subparsers: Any) -> None:
    install = subparsers.add_parser("install", help="connect one HubSpot or Klaviyo account")
    platforms = install.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    hubspot = platforms.add_parser(
        "hubspot", help="create the dcb_* contact properties; print the webhook settings"
    )
    hubspot.add_argument(
        "--token-env",
        default="DCB_HUBSPOT_ACCESS_TOKEN",
        metavar="VAR",
        help="environment variable holding the private app's access token "
        "(default: DCB_HUBSPOT_ACCESS_TOKEN)",
    )
    hubspot.set_defaults(func=run_hubspot)
    klaviyo = platforms.add_parser(
        "klaviyo", help="check the key, register the system webhook, print the flow actions"
    )
    klaviyo.add_argument(
        "--key-env",
        default="DCB_KLAVIYO_API_KEY",
        metavar="VAR",
        help="environment variable holding the private API key (default: DCB_KLAVIYO_API_KEY)",
    )
    klaviyo.set_defaults(func=run_klaviyo)


def run_hubspot(args: argparse.Namespace) -> int:
    return install_hubspot(args.token_env, os.environ, Runtime(), sys.stdout, sys.stderr)


def run_klaviyo(args: argparse.Namespace) -> int:
    return install_klaviyo(args.key_env, os.environ, Runtime(), sys.stdout, sys.stderr)


# -- HubSpot --------------------------------------------------------------------------------


def install_hubspot(
    token_env: str, environ: Mapping[str, str], runtime: Runtime, out: TextIO, err: TextIO
) -> int:
    """Provision HubSpot with the token in `environ[token_env]`; the exit status."""
    try:
        settings, token, manifest = _prepare(token_env, environ, "the private app's token")
    except InstallError as exc:
        return _fail(err, "hubspot", str(exc))
    client, _ = hubspot_client(settings, token, runtime)
    report = client.provision()
    if report.problems:
        return _fail(err, "hubspot", _hide(_hubspot_problem(report, manifest), token))
    print("HubSpot: the token works and may write contact properties.", file=out)
    print(_hubspot_changes(report, manifest), file=out)
    print(file=out)
    _print_url(out, settings, HUBSPOT_WEBHOOK_PATH, "Webhook target URL (your app's webhooks): ")
    print("Subscriptions to add (object type contact):", file=out)
    for subscription in manifest.hubspot.webhook_subscriptions:
        print(f"  {_subscription(subscription)}", file=out)
    print(f"Scopes the app needs: {', '.join(manifest.hubspot.scopes)}", file=out)
    return 0


def _hubspot_problem(report: ProvisionReport, manifest: Manifest) -> str:
    group = manifest.hubspot.property_group
    first = report.problems[0]
    if first.startswith(f"group {group}:"):
        return (
            f"the token was refused when creating the property group ({first}); use a "
            f"private app's access token with the scopes "
            f"{', '.join(manifest.hubspot.scopes[1:])}"
        )
    wrong = [p for p in report.problems if ", expected string/" in p]
    if wrong:
        return (
            "properties exist with the wrong type: " + "; ".join(wrong) + ". Change their "
            "field type in HubSpot (Settings > Properties), or delete them and run this "
            "again to have them created"
        )
    return "could not create every property: " + "; ".join(report.problems)


def _hubspot_changes(report: ProvisionReport, manifest: Manifest) -> str:
    count = len(manifest.properties)
    group = manifest.hubspot.property_group
    if not report.created:
        return f"Nothing to change: the {group} group and all {count} dcb_* properties exist."
    return f"Created {len(report.created)}: {', '.join(report.created)}."


def _subscription(subscription: Subscription) -> str:
    if subscription.property_name:
        return f"{subscription.subscription_type} of {subscription.property_name}"
    return subscription.subscription_type


# -- Klaviyo --------------------------------------------------------------------------------


def install_klaviyo(
    key_env: str, environ: Mapping[str, str], runtime: Runtime, out: TextIO, err: TextIO
) -> int:
    """Check the key in `environ[key_env]`, register the system webhook; the exit status."""
    try:
        settings, key, manifest = _prepare(key_env, environ, "the private API key")
        actions = flow_actions()
    except (InstallError, FlowBodiesError) as exc:
        return _fail(err, "klaviyo", str(exc))
    client, _ = klaviyo_client(settings, key, runtime)
    report = client.provision()
    if report.problems:
        return _fail(err, "klaviyo", _hide("; ".join(report.problems), key))
    print("Klaviyo: the key works.", file=out)
    skipped = _why_no_system_webhook(settings)
    if skipped:
        print(f"System webhook: not registered: {skipped}", file=out)
    else:
        registration = _register_system_webhook(settings, key, manifest, runtime)
        if registration.status is Registration.FAILED:
            return _fail(err, "klaviyo", _hide(f"system webhook: {registration.detail}", key))
        print(f"System webhook: {_registration_text(registration)}", file=out)
    print(file=out)
    print("In each flow below, add a Webhook action:", file=out)
    _print_url(out, settings, KLAVIYO_FLOW_PATH, "  URL: ")
    print("  Header: X-DCB-Token: <one of the tokens in DCB_KLAVIYO_FLOW_TOKEN>", file=out)
    if not settings.klaviyo_flow_tokens:
        print(
            f"  (DCB_KLAVIYO_FLOW_TOKEN is not set: set it to a long random value, e.g. "
            f"from {NEW_SECRET}, and give `dcb serve` the same value)",
            file=out,
        )
    for action in actions:
        print(f"\n{action.flow}: body\n{action.body}", file=out)
    return 0


def _why_no_system_webhook(settings: Settings) -> str:
    """Why the system webhook cannot be registered from these settings ('' when it can)."""
    if not settings.public_url or not settings.public_url.startswith("https://"):
        return (
            "Klaviyo calls only https URLs: set DCB_PUBLIC_URL to the public https base "
            "URL and run this again"
        )
    if not settings.klaviyo_webhook_secrets:
        return (
            "set DCB_KLAVIYO_WEBHOOK_SECRET (its signing secret, e.g. from "
            f"{NEW_SECRET}) and run this again"
        )
    return ""


def _register_system_webhook(
    settings: Settings, key: str, manifest: Manifest, runtime: Runtime
) -> WebhookRegistration:
    gate = webhooks_throttle(Pauses(runtime.epoch), runtime.sleep, runtime.epoch)
    webhooks = KlaviyoWebhooks(key, base_url=settings.klaviyo_api_url, gate=gate)
    return webhooks.register(
        f"{settings.public_url}{KLAVIYO_WEBHOOK_PATH}",
        name=manifest.name,
        secret=settings.klaviyo_webhook_secrets[0].value,
    )


def _registration_text(registration: WebhookRegistration) -> str:
    topics = f" (topics: {', '.join(registration.topics)})" if registration.topics else ""
    if registration.status is Registration.EXISTS:
        return f"nothing to change: {registration.detail}{topics}."
    return f"{registration.detail}{topics}."


# -- shared ---------------------------------------------------------------------------------


def _prepare(
    env_name: str, environ: Mapping[str, str], what: str
) -> tuple[Settings, str, Manifest]:
    """The settings, the credential in `environ[env_name]` and the manifest."""
    secret = (environ.get(env_name) or "").strip()
    if not secret:
        raise InstallError(f"{env_name} is not set: put {what} in it")
    try:
        return Settings.from_env(environ), secret, load_manifest()
    except (SettingsError, ManifestError) as exc:
        raise InstallError(str(exc)) from None


def _print_url(out: TextIO, settings: Settings, path: str, label: str) -> None:
    print(f"{label}{settings.public_url or PLACEHOLDER}{path}", file=out)
    if not settings.public_url:
        print(
            f"  (DCB_PUBLIC_URL is not set: replace {PLACEHOLDER} with the public https "
            "address that reaches `dcb serve`, and set DCB_PUBLIC_URL to it)",
            file=out,
        )


def _hide(text: str, secret: str) -> str:
    """`text` with `secret` masked, however a platform message may have echoed it."""
    return text.replace(secret, "***") if secret else text


def _fail(err: TextIO, platform: str, message: str) -> int:
    print(f"dcb install {platform}: {message}", file=err)
    return 1
