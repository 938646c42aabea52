"""Access to the pull endpoint: its own API keys, or signed URLs that expire."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.signed_urls import Access, AccessError, sign_path, url_signature, verify_access

NOW = 1_800_000_000.0
PATH = "/v1/blocks/klaviyo/default/ada@example.com"
KEY = "url-signing-key-1"


def check(
    path: str,
    query: dict[str, str],
    headers: dict[str, str] | None = None,
    *,
    now: float = NOW,
    api_keys: tuple[str, ...] = ("pull-key-1",),
    signing_keys: tuple[str, ...] = (KEY,),
) -> Access:
    return verify_access(
        "GET", path, query, headers or {}, api_keys=api_keys, signing_keys=signing_keys, now=now
    )


def signed(path: str = PATH, expires: float = NOW + 3600, cdn: bool = False, key: str = KEY):
    url = urlsplit(sign_path(path, key=key, expires=int(expires), cdn=cdn))
    return unquote(url.path), dict(parse_qsl(url.query))


def refused(status: int, *args: object, **kwargs: object) -> str:
    with pytest.raises(AccessError) as caught:
        check(*args, **kwargs)  # type: ignore[arg-type]
    assert caught.value.status == status, caught.value.message
    return caught.value.message


def test_a_pull_api_key_reads_privately() -> None:
    assert check(PATH, {}, {"Authorization": "Bearer pull-key-1"}) == Access(signed=False)
    assert check(
        PATH, {}, {"authorization": "bearer pull-key-2"}, api_keys=("pull-key-1", "pull-key-2")
    )


def test_other_keys_cannot_read() -> None:
    for token in ("events-key-1", "pk_live_publishable", "pull-key-1x", ""):
        message = refused(401, PATH, {}, {"Authorization": f"Bearer {token}"})
        assert "pull-key" not in message  # never echoes a secret
    assert "not enabled" in refused(401, PATH, {}, {"Authorization": "Bearer x"}, api_keys=())


def test_no_credentials_say_how_to_read() -> None:
    assert "Bearer" in refused(401, PATH, {})


def test_a_signed_url_reads_until_it_expires() -> None:
    path, query = signed(expires=NOW + 60)
    assert check(path, query, now=NOW + 59) == Access(signed=True, cdn=False)
    assert "expired at" in refused(403, path, query, now=NOW + 60)


def test_a_cdn_url_says_so() -> None:
    path, query = signed(cdn=True)
    assert check(path, query) == Access(signed=True, cdn=True)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p, q: (p.replace("ada@", "bob@"), q),  # another profile
        lambda p, q: (p, {**q, "expires": str(int(q["expires"]) + 1)}),  # a longer life
        lambda p, q: (p, {**q, "cdn": "1"}),  # made public
        lambda p, q: (p, {**q, "sig": q["sig"][:-1] + ("0" if q["sig"][-1] != "0" else "1")}),
        lambda p, q: (p, {k: v for k, v in q.items() if k != "sig"}),
    ],
)
def test_a_tampered_signed_url_fails(tamper) -> None:  # type: ignore[no-untyped-def]
    path, query = tamper(*signed())
    refused(401, path, query)


def test_an_expired_forgery_is_told_apart_from_nothing() -> None:
    path, query = signed(expires=NOW - 10, key="not-our-key")
    refused(401, path, query)  # the signature is checked first: no "expired" for a forgery


def test_rotation_accepts_every_configured_key() -> None:
    path, query = signed(key="old-key")
    assert check(path, query, signing_keys=("new-key", "old-key")).signed
    refused(401, path, query, signing_keys=("new-key",))


def test_malformed_expires_is_a_bad_request() -> None:
    refused(400, PATH, {"expires": "tomorrow", "sig": "ab"})


def test_signed_urls_off_without_a_key() -> None:
    path, query = signed()
    assert "not enabled" in refused(401, path, query, signing_keys=())


def test_the_signature_covers_method_path_expiry_and_scope() -> None:
    base = url_signature(KEY, PATH, 10, False)
    assert base != url_signature(KEY, PATH, 10, False, method="POST")
    assert base != url_signature(KEY, PATH + "x", 10, False)
    assert base != url_signature(KEY, PATH, 11, False)
    assert base != url_signature(KEY, PATH, 10, True)


@given(st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s), st.booleans())
def test_sign_then_verify_always_passes(profile_id: str, cdn: bool) -> None:
    path, query = signed(f"/v1/blocks/hubspot/default/{profile_id}", cdn=cdn)
    assert path == f"/v1/blocks/hubspot/default/{profile_id}"
    assert check(path, query).cdn is cdn
