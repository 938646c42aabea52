"""Klaviyo's token endpoint (a form POST with HTTP Basic and PKCE), and `KlaviyoClient`
writing with OAuth tokens kept fresh by `OAuthTokens`, on the fake Klaviyo API with an
injected clock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from adapters.klaviyo.client import KlaviyoClient, klaviyo_throttle
from adapters.klaviyo.oauth import KlaviyoOAuthApi, KlaviyoOAuthConfig
from adapters.storage.token_store import SqliteGrantStore, TokenCipher
from connector.core.events import ProfileRef
from connector.core.oauth import (
    GrantRevoked,
    OAuthRefused,
    OAuthTokens,
    code_challenge,
    new_grant,
)
from connector.core.pauses import Pauses
from connector.core.ports import FetchStatus, ProfileWrite, WriteStatus
from connector.core.tokens import TokenUnavailable
from tests.fakes.clock import FakeClock
from tests.fakes.fake_klaviyo import ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET, FakeKlaviyoApi

REDIRECT = "https://hooks.example/oauth/klaviyo/callback"
VERIFIER = "v" * 43 + "-verifier"
GRANT = f"klaviyo-{ACCOUNT_ID}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeKlaviyoApi]:
    api = FakeKlaviyoApi(clock=clock)
    yield api
    api.close()


@pytest.fixture
def oauth(fake: FakeKlaviyoApi) -> KlaviyoOAuthApi:
    return KlaviyoOAuthApi(KlaviyoOAuthConfig(CLIENT_ID, CLIENT_SECRET, fake.base_url))


@pytest.fixture
def store(tmp_path: Path) -> SqliteGrantStore:
    return SqliteGrantStore(tmp_path / "t.sqlite3", TokenCipher([Fernet.generate_key().decode()]))


def code(fake: FakeKlaviyoApi, verifier: str = VERIFIER) -> str:
    return fake.authorize(REDIRECT, code_challenge(verifier))


def installed(
    fake: FakeKlaviyoApi, oauth: KlaviyoOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> OAuthTokens:
    answer = oauth.exchange(code(fake), REDIRECT, VERIFIER)
    store.save(new_grant("klaviyo", oauth.account_of(answer.access_token), answer, clock()))
    return OAuthTokens(store, oauth, clock, platform="klaviyo")


def client(fake: FakeKlaviyoApi, tokens: OAuthTokens, clock: FakeClock) -> KlaviyoClient:
    gate = klaviyo_throttle(Pauses(clock), clock.sleep, clock)
    return KlaviyoClient(
        lambda force_refresh=False, stale=None: tokens.token(
            GRANT, force_refresh=force_refresh, stale=stale
        ),
        base_url=fake.base_url,
        gate=gate,
        sleep=clock.sleep,
    )


def write(email: str) -> ProfileWrite:
    return ProfileWrite(email, ProfileRef(email=email), {"dcb_block": "onboarding"})


def test_the_authorize_url_carries_the_s256_challenge_never_the_verifier(
    oauth: KlaviyoOAuthApi,
) -> None:
    url = oauth.authorize_url(
        redirect_uri=REDIRECT, scopes=["profiles:read", "profiles:write"], state="s.1.x",
        code_challenge=code_challenge(VERIFIER),
    )  # fmt: skip
    assert url.startswith("https://www.klaviyo.com/oauth/authorize?response_type=code&")
    assert "code_challenge_method=S256" in url and code_challenge(VERIFIER) in url
    assert VERIFIER not in url and "scope=profiles%3Aread+profiles%3Awrite" in url
    with pytest.raises(ValueError, match="PKCE"):
        oauth.authorize_url(redirect_uri=REDIRECT, scopes=[], state="s", code_challenge=None)


def test_code_exchange_is_a_basic_auth_form_post_with_the_verifier(
    fake: FakeKlaviyoApi, oauth: KlaviyoOAuthApi
) -> None:
    answer = oauth.exchange(code(fake), REDIRECT, VERIFIER)
    assert answer.expires_in == 3600
    assert answer.access_token not in repr(answer)
    assert oauth.account_of(answer.access_token) == ACCOUNT_ID
    [call] = fake.token_calls("authorization_code")
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert call.headers["authorization"] == f"Basic {basic}"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "code_verifier=" in call.body and CLIENT_SECRET not in call.body
    assert fake.bearer_calls == [answer.access_token]  # GET /api/accounts, with the token


def test_a_wrong_verifier_a_reused_code_or_a_wrong_secret_is_refused(
    fake: FakeKlaviyoApi, oauth: KlaviyoOAuthApi
) -> None:
    with pytest.raises(OAuthRefused, match="400 invalid_grant Invalid code verifier"):
        oauth.exchange(code(fake), REDIRECT, "another-verifier-" + "x" * 40)
    used = code(fake)
    oauth.exchange(used, REDIRECT, VERIFIER)
    with pytest.raises(OAuthRefused, match="invalid_grant") as reused:
        oauth.exchange(used, REDIRECT, VERIFIER)
    assert not isinstance(reused.value, GrantRevoked)  # a bad code is no uninstall
    with pytest.raises(OAuthRefused, match="Redirect URI mismatch"):
        oauth.exchange(code(fake), "https://evil.example/cb", VERIFIER)
    wrong = KlaviyoOAuthApi(KlaviyoOAuthConfig(CLIENT_ID, "not-the-secret", fake.base_url))
    with pytest.raises(OAuthRefused, match="401 invalid_client") as caught:
        wrong.exchange(code(fake), REDIRECT, VERIFIER)
    assert "not-the-secret" not in str(caught.value)
    with pytest.raises(OAuthRefused, match="no PKCE code verifier"):
        oauth.exchange(code(fake), REDIRECT, None)


def test_a_write_carries_the_token_and_refreshes_before_expiry(
    fake: FakeKlaviyoApi, oauth: KlaviyoOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    tokens = installed(fake, oauth, store, clock)
    klaviyo = client(fake, tokens, clock)
    first = tokens.token(GRANT)
    [outcome] = klaviyo.write([write("a@example.com")])
    assert outcome.status is WriteStatus.WRITTEN
    assert fake.bearer_calls[-1] == first
    clock.advance(3600 - 200)  # under five minutes left: refreshed before the call
    [outcome] = klaviyo.write([write("b@example.com")])
    assert outcome.status is WriteStatus.WRITTEN
    assert len(fake.token_calls("refresh_token")) == 1
    assert fake.bearer_calls[-1] != first
    assert store.load(GRANT).access_token == fake.bearer_calls[-1]  # type: ignore[union-attr]
    assert fake.by_email("b@example.com").properties["dcb_block"] == "onboarding"  # type: ignore[union-attr]


def test_a_401_forces_one_refresh_and_one_more_call(
    fake: FakeKlaviyoApi, oauth: KlaviyoOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    tokens = installed(fake, oauth, store, clock)
    klaviyo = client(fake, tokens, clock)
    fake.access_tokens.clear()  # Klaviyo no longer takes the token it gave
    [outcome] = klaviyo.write([write("a@example.com")])
    assert outcome.status is WriteStatus.WRITTEN
    assert len(fake.token_calls("refresh_token")) == 1
    assert fake.calls("profile-import") == 2
    fake.access_tokens.clear()
    found = klaviyo.fetch(ProfileRef(email="a@example.com"), ["dcb_block"])
    assert found.status is FetchStatus.FOUND  # reads refresh the same way
    assert len(fake.token_calls("refresh_token")) == 2


def test_a_revoked_grant_disconnects_the_account_and_writes_wait(
    fake: FakeKlaviyoApi, oauth: KlaviyoOAuthApi, store: SqliteGrantStore, clock: FakeClock
) -> None:
    tokens = installed(fake, oauth, store, clock)
    klaviyo = client(fake, tokens, clock)
    fake.revoke()
    with pytest.raises(GrantRevoked, match="400 invalid_grant"):
        oauth.refresh(store.load(GRANT).refresh_token)  # type: ignore[union-attr]
    many = [write(f"p{n}@example.com") for n in range(30)]  # a bulk job's worth
    for batch in ([write("a@example.com")], many):
        outcomes = klaviyo.write(batch)
        assert all(o.status is WriteStatus.RETRY and o.throttled for o in outcomes)
        assert all("disconnected" in o.reason and o.retry_after for o in outcomes)
    info = store.grants()[0]
    assert info.status == "disconnected" and "invalid_grant" in info.reason
    calls = len(fake.requests)
    with pytest.raises(TokenUnavailable, match="disconnected"):
        tokens.token(GRANT)
    assert klaviyo.fetch(ProfileRef(email="a@example.com"), ["x"]).status is FetchStatus.RETRY
    assert "no access token" in klaviyo.provision().problems[0]
    assert len(fake.requests) == calls  # nothing more is asked of Klaviyo for it
    assert tokens.installed() == {ACCOUNT_ID}  # its data stays until removed
