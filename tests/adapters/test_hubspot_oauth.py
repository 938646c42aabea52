"""HubSpot's token endpoint through the SDK, and `HubSpotTokens` keeping tokens fresh, on
the fake HubSpot API with an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from adapters.hubspot.client import HubSpotClient, hubspot_throttle
from adapters.hubspot.oauth import (
    GrantRevoked,
    HubSpotOAuthApi,
    HubSpotTokens,
    OAuthClientConfig,
    OAuthRefused,
    grant_for,
)
from adapters.storage.token_store import SqliteGrantStore, TokenCipher
from connector.core.events import ProfileRef
from connector.core.pauses import Pauses
from connector.core.ports import ProfileWrite, WriteStatus
from connector.core.tokens import TokenUnavailable
from connector.manifest import load_manifest
from tests.fakes.clock import FakeClock
from tests.fakes.fake_hubspot import CLIENT_ID, CLIENT_SECRET, FakeHubSpotApi

REDIRECT = "https://hooks.example/oauth/hubspot/callback"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeHubSpotApi]:
    api = FakeHubSpotApi(clock=clock)
    api.define_dcb_properties()
    yield api
    api.close()


@pytest.fixture
def oauth(fake: FakeHubSpotApi) -> HubSpotOAuthApi:
    return HubSpotOAuthApi(OAuthClientConfig(CLIENT_ID, CLIENT_SECRET, fake.base_url))


@pytest.fixture
def store(tmp_path: Path) -> SqliteGrantStore:
    return SqliteGrantStore(tmp_path / "t.sqlite3", TokenCipher([Fernet.generate_key().decode()]))


def installed(fake: FakeHubSpotApi, oauth: HubSpotOAuthApi, store: SqliteGrantStore,
              clock: FakeClock) -> str:
    answer = oauth.exchange(fake.authorize(77, REDIRECT), REDIRECT)
    portal = oauth.portal_of(answer.access_token)
    store.save(grant_for(portal, answer, clock()))
    return portal


def client(fake: FakeHubSpotApi, tokens: HubSpotTokens, clock: FakeClock) -> HubSpotClient:
    gate = hubspot_throttle(Pauses(clock), clock.sleep, clock)
    return HubSpotClient(
        lambda **kw: tokens.token("hubspot-77", **kw),
        base_url=fake.base_url, gate=gate, schema=load_manifest().property_schema, clock=clock,
    )


def write(email: str) -> ProfileWrite:
    return ProfileWrite(email, ProfileRef(email=email), {"dcb_block": "onboarding"})


def test_code_exchange_and_portal_lookup(fake: FakeHubSpotApi, oauth: HubSpotOAuthApi) -> None:
    answer = oauth.exchange(fake.authorize(77, REDIRECT), REDIRECT)
    assert answer.expires_in == 1800
    assert "token" not in repr(answer).replace("TokenAnswer", "")
    assert oauth.portal_of(answer.access_token) == "77"
    form = fake.token_calls("authorization_code")[0].body
    assert "grant_type=authorization_code" in form and "redirect_uri=" in form


def test_a_reused_code_or_wrong_redirect_is_refused(
    fake: FakeHubSpotApi, oauth: HubSpotOAuthApi
) -> None:
    code = fake.authorize(77, REDIRECT)
    oauth.exchange(code, REDIRECT)
    with pytest.raises(OAuthRefused, match="BAD_AUTH_CODE"):
        oauth.exchange(code, REDIRECT)
    with pytest.raises(OAuthRefused, match="BAD_REDIRECT_URI"):
        oauth.exchange(fake.authorize(77, REDIRECT), "https://evil.example/cb")
    wrong = HubSpotOAuthApi(OAuthClientConfig(CLIENT_ID, "not-the-secret", fake.base_url))
    with pytest.raises(OAuthRefused, match="BAD_CLIENT_SECRET") as caught:
        wrong.exchange(fake.authorize(77, REDIRECT), REDIRECT)
    assert "not-the-secret" not in str(caught.value)


def test_tokens_refresh_a_few_minutes_before_expiry(
    fake: FakeHubSpotApi, oauth: HubSpotOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    installed(fake, oauth, store, clock)
    tokens = HubSpotTokens(store, oauth, clock)
    first = tokens.token("hubspot-77")
    clock.advance(1800 - 301)
    assert tokens.token("hubspot-77") == first
    clock.advance(2)  # under five minutes left
    second = tokens.access_token("hubspot-77")
    assert second is not None and second != first
    assert len(fake.token_calls("refresh_token")) == 1
    assert store.load("hubspot-77").access_token == second  # type: ignore[union-attr]


def test_a_write_after_expiry_refreshes_first(
    fake: FakeHubSpotApi, oauth: HubSpotOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    installed(fake, oauth, store, clock)
    hubspot = client(fake, HubSpotTokens(store, oauth, clock), clock)
    clock.advance(3600)  # long expired
    [outcome] = hubspot.write([write("a@example.com")])
    assert outcome.status is WriteStatus.WRITTEN
    assert len(fake.token_calls("refresh_token")) == 1
    assert fake.portals_called == ["77"]


def test_a_401_forces_one_refresh_and_one_more_call(
    fake: FakeHubSpotApi, oauth: HubSpotOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    installed(fake, oauth, store, clock)
    hubspot = client(fake, HubSpotTokens(store, oauth, clock), clock)
    fake.access_tokens.clear()  # HubSpot no longer takes the token it gave
    [outcome] = hubspot.write([write("a@example.com")])
    assert outcome.status is WriteStatus.WRITTEN
    assert len(fake.token_calls("refresh_token")) == 1
    assert len(fake.batch_calls()) == 2


def test_an_uninstall_disconnects_the_account_and_writes_wait(
    fake: FakeHubSpotApi, oauth: HubSpotOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    installed(fake, oauth, store, clock)
    tokens = HubSpotTokens(store, oauth, clock)
    hubspot = client(fake, tokens, clock)
    fake.uninstall(77)
    with pytest.raises(GrantRevoked, match="400 BAD_REFRESH_TOKEN"):
        oauth.refresh(store.load("hubspot-77").refresh_token)  # type: ignore[union-attr]
    [outcome] = hubspot.write([write("a@example.com")])
    assert outcome.status is WriteStatus.RETRY and outcome.throttled
    assert "disconnected" in outcome.reason and outcome.retry_after
    info = store.grants()[0]
    assert info.status == "disconnected" and "BAD_REFRESH_TOKEN" in info.reason
    calls = len(fake.requests)
    with pytest.raises(TokenUnavailable, match="disconnected"):
        tokens.token("hubspot-77")
    assert tokens.access_token("hubspot-77") is None
    assert len(fake.requests) == calls  # no more calls to HubSpot for it
    assert tokens.installed_portals() == {"77"}  # its data stays until removed
    assert tokens.remove("hubspot-77") and tokens.installed_portals() == frozenset()


def test_a_token_endpoint_outage_uses_a_still_valid_token(
    fake: FakeHubSpotApi, oauth: HubSpotOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    from tests.fakes.http_fake import Fault, Reply

    installed(fake, oauth, store, clock)
    tokens = HubSpotTokens(store, oauth, clock)
    current = tokens.token("hubspot-77")
    clock.advance(1700)
    fake.script(Fault(Reply(503, {"status": "error"}), path="/oauth/v1/token"))
    assert tokens.token("hubspot-77") == current  # still 100 s left
    clock.advance(200)
    fake.script(Fault(Reply(503, {"status": "error"}), path="/oauth/v1/token"))
    with pytest.raises(TokenUnavailable, match="refresh failed"):
        tokens.token("hubspot-77")
    assert store.grants()[0].status == "connected"
