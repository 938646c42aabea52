"""`dcb install hubspot|klaviyo` against the fake platform APIs (the real SDKs underneath)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.cli import main
from connector.cli.install import install_hubspot, install_klaviyo
from connector.flow_bodies import flow_actions
from connector.manifest import load_manifest
from connector.runtime import Runtime
from tests.fakes.clock import FakeClock
from tests.fakes.fake_hubspot import FakeHubSpotApi
from tests.fakes.fake_klaviyo import FakeKlaviyoApi
from tests.fakes.klaviyo_spec import problems

PUBLIC_URL = "https://hooks.shop.example"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "inbound.md"


@dataclass
class Ran:
    status: int
    out: str
    err: str


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpotApi]:
    with FakeHubSpotApi("pat-na1-secret-token") as api:
        yield api


@pytest.fixture
def klaviyo() -> Iterator[FakeKlaviyoApi]:
    clock = FakeClock()
    with FakeKlaviyoApi("pk_secret_key_123", clock=clock) as api:
        yield api


def run_hubspot(api: FakeHubSpotApi, token: str | None = None, **env: str) -> Ran:
    environ = {"TOKEN": token or api.token, "DCB_HUBSPOT_API_URL": api.base_url, **env}
    out, err = io.StringIO(), io.StringIO()
    status = install_hubspot("TOKEN", environ, Runtime(), out, err)
    return Ran(status, out.getvalue(), err.getvalue())


def run_klaviyo(api: FakeKlaviyoApi, key: str | None = None, **env: str) -> Ran:
    clock = api.clock
    assert isinstance(clock, FakeClock)  # shared with the fake: pacing is instant
    environ = {"KEY": key or api.api_key, "DCB_KLAVIYO_API_URL": api.base_url,
               "DCB_PUBLIC_URL": PUBLIC_URL, "DCB_KLAVIYO_WEBHOOK_SECRET": "whsec-1", **env}
    out, err = io.StringIO(), io.StringIO()
    status = install_klaviyo("KEY", environ, Runtime(sleep=clock.sleep, epoch=clock), out, err)
    return Ran(status, out.getvalue(), err.getvalue())


# -- HubSpot --------------------------------------------------------------------------------


def test_hubspot_install_creates_every_declared_property_then_changes_nothing(
    hubspot: FakeHubSpotApi,
) -> None:
    first = run_hubspot(hubspot, DCB_PUBLIC_URL=PUBLIC_URL)
    assert first.status == 0, first.err
    manifest = load_manifest()
    for spec in manifest.properties:
        defined = hubspot.definitions[spec.name]
        assert (defined["type"], defined["fieldType"], defined["label"], defined["groupName"]) == (
            "string", spec.field_type, spec.label, "dcb")
    assert hubspot.groups["dcb"]["label"] == manifest.hubspot.property_group_label
    assert f"Created {len(manifest.properties) + 1}:" in first.out
    assert f"{PUBLIC_URL}/webhooks/hubspot" in first.out
    for subscription in manifest.hubspot.webhook_subscriptions:
        assert subscription.subscription_type in first.out
    assert "contact.propertyChange of cart_value" in first.out

    before = len(hubspot.requests)
    second = run_hubspot(hubspot, DCB_PUBLIC_URL=PUBLIC_URL)
    assert second.status == 0, second.err
    assert "Nothing to change" in second.out and "Created" not in second.out
    created_again = [r for r in hubspot.requests[before:] if r.method == "POST"
                     and r.path == "/crm/v3/properties/contacts"]
    assert created_again == []


def test_hubspot_install_without_a_public_url_prints_a_placeholder(
    hubspot: FakeHubSpotApi,
) -> None:
    ran = run_hubspot(hubspot)
    assert ran.status == 0
    assert "https://YOUR-PUBLIC-HOST/webhooks/hubspot" in ran.out
    assert "DCB_PUBLIC_URL is not set" in ran.out


def test_hubspot_install_reports_a_property_of_the_wrong_type(hubspot: FakeHubSpotApi) -> None:
    hubspot.define_property("dcb_body", "text")
    ran = run_hubspot(hubspot)
    assert ran.status == 1
    assert "dcb_body is string/text, expected string/textarea" in ran.err
    assert ran.out == ""


def test_hubspot_install_with_a_bad_token_says_so_without_the_token(
    hubspot: FakeHubSpotApi,
) -> None:
    ran = run_hubspot(hubspot, token="pat-na1-wrong-token-987")
    assert ran.status == 1
    assert "the token was refused" in ran.err and "401" in ran.err
    assert "wrong-token" not in ran.err + ran.out
    assert "Traceback" not in ran.err
    assert hubspot.groups == {}


def test_hubspot_install_needs_the_named_variable(hubspot: FakeHubSpotApi) -> None:
    out, err = io.StringIO(), io.StringIO()
    status = install_hubspot("MY_TOKEN", {}, Runtime(), out, err)
    assert status == 1
    assert err.getvalue() == "dcb install hubspot: MY_TOKEN is not set: put the private app's token in it\n"


def test_the_command_line_runs_the_hubspot_install(
    hubspot: FakeHubSpotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HS_TOKEN", hubspot.token)
    monkeypatch.setenv("DCB_HUBSPOT_API_URL", hubspot.base_url)
    assert main(["install", "hubspot", "--token-env", "HS_TOKEN"]) == 0
    assert "the token works" in capsys.readouterr().out


# -- Klaviyo --------------------------------------------------------------------------------


def test_klaviyo_install_registers_the_system_webhook_once(klaviyo: FakeKlaviyoApi) -> None:
    first = run_klaviyo(klaviyo)
    assert first.status == 0, first.err
    assert klaviyo.rejected == []
    [webhook] = klaviyo.webhooks.values()
    assert webhook.endpoint_url == f"{PUBLIC_URL}/webhooks/klaviyo"
    assert webhook.secret_key == "whsec-1"
    assert webhook.name == load_manifest().name
    assert set(webhook.topics) == {
        "event:klaviyo.viewed_product", "event:klaviyo.added_to_cart",
        "event:klaviyo.started_checkout", "event:klaviyo.placed_order"}
    assert f"created webhook {webhook.id}" in first.out

    second = run_klaviyo(klaviyo)
    assert second.status == 0, second.err
    assert len(klaviyo.webhooks) == 1
    assert f"nothing to change: webhook {webhook.id} already calls this URL" in second.out


def test_klaviyo_install_prints_the_flow_action_for_each_flow(klaviyo: FakeKlaviyoApi) -> None:
    ran = run_klaviyo(klaviyo, DCB_KLAVIYO_FLOW_TOKEN="flow-secret-token")
    assert ran.status == 0, ran.err
    assert f"URL: {PUBLIC_URL}/webhooks/klaviyo/flow" in ran.out
    assert "X-DCB-Token: <one of the tokens in DCB_KLAVIYO_FLOW_TOKEN>" in ran.out
    assert "flow-secret-token" not in ran.out and "whsec-1" not in ran.out
    for action in flow_actions():
        assert f"{action.flow}: body\n{action.body}" in ran.out


def test_klaviyo_install_on_an_account_without_webhooks_says_why_and_goes_on(
    klaviyo: FakeKlaviyoApi,
) -> None:
    klaviyo.webhooks_forbidden = True
    ran = run_klaviyo(klaviyo)
    assert ran.status == 0, ran.err
    assert "System webhook: this account cannot use Klaviyo's Webhooks API (403" in ran.out
    assert "Started Checkout: body" in ran.out
    assert klaviyo.webhooks == {}


def test_klaviyo_install_without_a_webhook_secret_does_not_register(
    klaviyo: FakeKlaviyoApi,
) -> None:
    ran = run_klaviyo(klaviyo, DCB_KLAVIYO_WEBHOOK_SECRET="")
    assert ran.status == 0
    assert "not registered: set DCB_KLAVIYO_WEBHOOK_SECRET" in ran.out
    assert klaviyo.calls("webhooks") == 0


def test_klaviyo_install_with_a_bad_key_says_so_without_the_key(klaviyo: FakeKlaviyoApi) -> None:
    ran = run_klaviyo(klaviyo, key="pk_wrong_key_456789")
    assert ran.status == 1
    assert ran.err.startswith("dcb install klaviyo: Klaviyo did not accept the key: 401")
    assert "wrong_key" not in ran.err + ran.out
    assert klaviyo.calls("webhooks") == 0


def test_the_fakes_webhook_answers_follow_klaviyos_spec(klaviyo: FakeKlaviyoApi) -> None:
    run_klaviyo(klaviyo)
    [webhook] = klaviyo.webhooks.values()
    resource = klaviyo._webhook_resource(webhook)
    assert problems("PostWebhookResponse", {"data": resource}, "webhooks") == []
    assert problems("GetWebhookResponseCollectionCompoundDocument",
                    klaviyo._list_webhooks().body, "webhooks") == []
    assert problems("GetWebhookTopicResponseCollection", klaviyo._list_topics().body,
                    "webhooks") == []


# -- the flow bodies: one source -------------------------------------------------------------


def test_the_docs_show_exactly_the_shipped_flow_bodies() -> None:
    documented = re.findall(r"```\n(\{\n  \"metric\".*?)\n```", DOCS.read_text(), re.DOTALL)
    assert documented == [action.body for action in flow_actions()]


def test_there_is_a_body_for_each_flow_the_manifest_names() -> None:
    assert [a.flow for a in flow_actions()] == list(load_manifest().klaviyo.flow_metrics)
