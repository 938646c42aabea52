"""Webhook signature checks: every scheme, every failure mode, and the signing laws."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hubspot.utils.signature import Signature
from hypothesis import given
from hypothesis import strategies as st

from webhooks.signatures import (
    FLOW_TOKEN,
    Failure,
    SignatureError,
    hubspot_uri,
    klaviyo_time,
    sign_hubspot_v1,
    sign_hubspot_v2,
    sign_hubspot_v3,
    sign_klaviyo,
    sign_klaviyo_flow,
    verify_hubspot,
    verify_klaviyo,
    verify_klaviyo_flow,
)

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
NOW_MS = str(int(NOW.timestamp() * 1000))
SECRET = "s3cret-client-secret"
OLD_SECRET = "previous-client-secret"
URI = "https://hooks.shop.example/webhooks/hubspot?account=acme"
BODY = b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":7}]'
WEBHOOK_ID = "a8b890458b4bbfaa26d961471b83c101d6de23bd826e7e5173a15310985ec3cb"
KLAVIYO_BODY = json.dumps({"data": [], "meta": {"klaviyo_webhook_id": WEBHOOK_ID}}).encode()
RFC1123 = "Sat, 28 Nov 2026 10:00:00 GMT"


def hubspot_headers(secret: str = SECRET, body: bytes = BODY, timestamp: str = NOW_MS,
                    uri: str = URI) -> dict[str, str]:
    return {
        "X-HubSpot-Signature-v3": sign_hubspot_v3(secret, "POST", uri, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def check_hubspot(headers: dict[str, str], *, body: bytes = BODY, uri: str = URI,
                  secrets: tuple[str, ...] = (SECRET,), allow_legacy: bool = False) -> str:
    return verify_hubspot(headers, method="POST", uri=uri, body=body, secrets=secrets,
                          now=NOW, allow_legacy=allow_legacy)


def klaviyo_headers(secret: str = SECRET, body: bytes = KLAVIYO_BODY,
                    timestamp: str = RFC1123) -> dict[str, str]:
    return {
        "Klaviyo-Webhook-Id": WEBHOOK_ID,
        "Klaviyo-Timestamp": timestamp,
        "Klaviyo-Signature": sign_klaviyo(secret, body, timestamp),
    }


def check_klaviyo(headers: dict[str, str], *, body: bytes = KLAVIYO_BODY,
                  secrets: tuple[str, ...] = (SECRET,)) -> str:
    return verify_klaviyo(headers, body=body, secrets=secrets, now=NOW)


def refused(reason: Failure) -> pytest.RaisesExc[SignatureError]:
    return pytest.raises(SignatureError, check=lambda exc: exc.reason is reason)


# --- HubSpot --------------------------------------------------------------------------------


def test_hubspot_published_v3_vector() -> None:
    signature = sign_hubspot_v3(
        "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", "POST", "https://www.example.com/webhook_uri",
        b"{'example_field':'example_value'}", "15000000",
    )
    assert signature == "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_hubspot_signing_agrees_with_the_official_sdk(version: str) -> None:
    body = '{"objectId": 42, "name": "Zoë"}'
    ours = {
        "v1": sign_hubspot_v1(SECRET, body.encode()),
        "v2": sign_hubspot_v2(SECRET, "POST", URI, body.encode()),
        "v3": sign_hubspot_v3(SECRET, "POST", URI, body.encode(), NOW_MS),
    }[version]
    sdk = Signature.get_signature(SECRET, body, version, URI, "POST", NOW_MS)
    assert ours == sdk


def test_hubspot_v3_passes() -> None:
    assert check_hubspot(hubspot_headers()) == "v3"


def test_hubspot_headers_are_case_insensitive() -> None:
    headers = {name.lower(): value for name, value in hubspot_headers().items()}
    assert check_hubspot(headers) == "v3"


def test_hubspot_accepts_any_rotated_secret() -> None:
    headers = hubspot_headers(secret=OLD_SECRET)
    assert check_hubspot(headers, secrets=(SECRET, OLD_SECRET)) == "v3"


def test_hubspot_window_edges_pass() -> None:
    for offset in (-300_000, 300_000):
        stamp = str(int(NOW_MS) + offset)
        assert check_hubspot(hubspot_headers(timestamp=stamp)) == "v3"


def test_hubspot_missing_signature() -> None:
    headers = hubspot_headers()
    del headers["X-HubSpot-Signature-v3"]
    with refused(Failure.MISSING_HEADER):
        check_hubspot(headers)


def test_hubspot_missing_timestamp() -> None:
    headers = hubspot_headers()
    del headers["X-HubSpot-Request-Timestamp"]
    with refused(Failure.MISSING_HEADER):
        check_hubspot(headers)


@pytest.mark.parametrize("stamp", ["soon", "1.5e12", "-1", "9" * 17])
def test_hubspot_unreadable_timestamp(stamp: str) -> None:
    with refused(Failure.BAD_TIMESTAMP):
        check_hubspot(hubspot_headers(timestamp=stamp))


def test_hubspot_stale() -> None:
    with refused(Failure.STALE):
        check_hubspot(hubspot_headers(timestamp=str(int(NOW_MS) - 300_001)))


def test_hubspot_future() -> None:
    with refused(Failure.FUTURE):
        check_hubspot(hubspot_headers(timestamp=str(int(NOW_MS) + 300_001)))


def test_hubspot_bad_signature() -> None:
    with refused(Failure.BAD_SIGNATURE) as caught:
        check_hubspot(hubspot_headers(secret="someone-else"))
    assert SECRET not in str(caught.value)


def test_hubspot_no_usable_secret() -> None:
    with refused(Failure.NO_SECRET):
        check_hubspot(hubspot_headers(secret=""), secrets=("",))


def test_hubspot_signature_over_the_proxy_url_fails() -> None:
    proxied = "http://10.0.0.5:8080/webhooks/hubspot?account=acme"
    with refused(Failure.BAD_SIGNATURE):
        check_hubspot(hubspot_headers(uri=proxied))


def test_hubspot_legacy_refused_by_default() -> None:
    headers = {"X-HubSpot-Signature": sign_hubspot_v1(SECRET, BODY)}
    with refused(Failure.MISSING_HEADER):
        check_hubspot(headers)


def test_hubspot_v1_when_allowed() -> None:
    headers = {"X-HubSpot-Signature": sign_hubspot_v1(SECRET, BODY),
               "X-HubSpot-Signature-Version": "v1"}
    assert check_hubspot(headers, allow_legacy=True) == "v1"


def test_hubspot_v2_when_allowed() -> None:
    headers = {"x-hubspot-signature": sign_hubspot_v2(OLD_SECRET, "POST", URI, BODY).upper(),
               "x-hubspot-signature-version": "v2"}
    assert check_hubspot(headers, allow_legacy=True, secrets=(SECRET, OLD_SECRET)) == "v2"


def test_hubspot_bad_legacy_signature() -> None:
    headers = {"X-HubSpot-Signature": sign_hubspot_v2("wrong", "POST", URI, BODY),
               "X-HubSpot-Signature-Version": "v2"}
    with refused(Failure.BAD_SIGNATURE):
        check_hubspot(headers, allow_legacy=True)


def test_hubspot_never_falls_back_when_v3_is_present() -> None:
    headers = hubspot_headers(secret="wrong")
    headers["X-HubSpot-Signature"] = sign_hubspot_v1(SECRET, BODY)
    with refused(Failure.BAD_SIGNATURE):
        check_hubspot(headers, allow_legacy=True)


def test_hubspot_uri_joins_public_base_path_and_query() -> None:
    assert hubspot_uri("https://hooks.shop.example/", "/webhooks/hubspot", b"a=1") == (
        "https://hooks.shop.example/webhooks/hubspot?a=1"
    )
    assert hubspot_uri("https://hooks.shop.example", "webhooks/hubspot") == (
        "https://hooks.shop.example/webhooks/hubspot"
    )


def test_hubspot_uri_decodes_the_documented_escapes_only() -> None:
    uri = hubspot_uri("https://h.example", "/p%3ax", "r=https%3A%2F%2Fa.b%2Fc%3Fd%40e%20f%2Cg")
    assert uri == "https://h.example/p:x?r=https://a.b/c?d@e%20f,g"


def test_hubspot_signature_with_escaped_query() -> None:
    uri = hubspot_uri("https://hooks.shop.example", "/webhooks/hubspot", "next=%2Fhome%3Fa%3Db")
    headers = hubspot_headers(uri="https://hooks.shop.example/webhooks/hubspot?next=/home?a%3Db")
    assert check_hubspot(headers, uri=uri) == "v3"


# --- Klaviyo system webhooks ----------------------------------------------------------------


@pytest.mark.parametrize("stamp", [RFC1123, "2026-11-28T10:00:00Z", "2026-11-28T10:00:00",
                                   "1795860000", "1795860000.5", "1795860000000"])
def test_klaviyo_passes_with_every_timestamp_format(stamp: str) -> None:
    assert check_klaviyo(klaviyo_headers(timestamp=stamp)) == WEBHOOK_ID


def test_klaviyo_time_formats_agree() -> None:
    assert klaviyo_time(RFC1123) == klaviyo_time("1795860000") == NOW
    assert klaviyo_time("Sat, 28 Nov 2026 11:00:00 +0100") == NOW


def test_klaviyo_signs_the_timestamp_text_as_sent() -> None:
    headers = klaviyo_headers(timestamp=RFC1123)
    headers["Klaviyo-Timestamp"] = "2026-11-28T10:00:00Z"  # the same moment, other text
    with refused(Failure.BAD_SIGNATURE):
        check_klaviyo(headers)


def test_klaviyo_signature_is_lowercase_hex_hmac() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"{}" + RFC1123.encode(), hashlib.sha256).hexdigest()
    assert sign_klaviyo("k", b"{}", RFC1123) == expected


def test_klaviyo_rotation_and_lowercase_headers() -> None:
    headers = {k.lower(): v for k, v in klaviyo_headers(secret=OLD_SECRET).items()}
    assert check_klaviyo(headers, secrets=(SECRET, OLD_SECRET)) == WEBHOOK_ID


@pytest.mark.parametrize("name", ["Klaviyo-Webhook-Id", "Klaviyo-Timestamp", "Klaviyo-Signature"])
def test_klaviyo_missing_header(name: str) -> None:
    headers = klaviyo_headers()
    del headers[name]
    with refused(Failure.MISSING_HEADER):
        check_klaviyo(headers)


def test_klaviyo_unreadable_timestamp() -> None:
    with refused(Failure.BAD_TIMESTAMP):
        check_klaviyo(klaviyo_headers(timestamp="yesterday-ish"))


def test_klaviyo_stale() -> None:
    with refused(Failure.STALE):
        check_klaviyo(klaviyo_headers(timestamp="Sat, 28 Nov 2026 09:54:59 GMT"))


def test_klaviyo_future() -> None:
    with refused(Failure.FUTURE):
        check_klaviyo(klaviyo_headers(timestamp="2026-11-28T10:05:01+00:00"))


def test_klaviyo_bad_signature() -> None:
    with refused(Failure.BAD_SIGNATURE) as caught:
        check_klaviyo(klaviyo_headers(secret="wrong"))
    assert SECRET not in str(caught.value)


def test_klaviyo_webhook_id_mismatch() -> None:
    body = json.dumps({"data": [], "meta": {"klaviyo_webhook_id": "another"}}).encode()
    with refused(Failure.WEBHOOK_ID_MISMATCH):
        check_klaviyo(klaviyo_headers(body=body), body=body)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"meta": 3}', b'{"meta": {}}'])
def test_klaviyo_body_without_webhook_id_mismatches(body: bytes) -> None:
    with refused(Failure.WEBHOOK_ID_MISMATCH):
        check_klaviyo(klaviyo_headers(body=body), body=body)


def test_klaviyo_no_usable_secret() -> None:
    with refused(Failure.NO_SECRET):
        check_klaviyo(klaviyo_headers(), secrets=())


# --- Klaviyo flow token ---------------------------------------------------------------------


def test_flow_token_passes_with_any_account_token() -> None:
    verify_klaviyo_flow(sign_klaviyo_flow("tok-2"), tokens=("tok-1", "tok-2"))
    verify_klaviyo_flow({FLOW_TOKEN.lower(): "tok-1"}, tokens=("tok-1",))


def test_flow_token_missing() -> None:
    with refused(Failure.MISSING_HEADER):
        verify_klaviyo_flow({"X-Klaviyo-Flow-ID": "abc"}, tokens=("tok-1",))


def test_flow_token_unknown() -> None:
    with refused(Failure.UNKNOWN_TOKEN) as caught:
        verify_klaviyo_flow(sign_klaviyo_flow("tok-9"), tokens=("tok-1",))
    assert "tok-1" not in str(caught.value)


def test_flow_token_non_ascii_is_just_unknown() -> None:
    with refused(Failure.UNKNOWN_TOKEN):
        verify_klaviyo_flow(sign_klaviyo_flow("tök-1"), tokens=("tok-1",))


def test_flow_token_none_configured() -> None:
    with refused(Failure.NO_SECRET):
        verify_klaviyo_flow(sign_klaviyo_flow(""), tokens=("",))


# --- laws -----------------------------------------------------------------------------------

secrets = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40)
bodies = st.binary(max_size=300)
paths = st.text("abcxyz0123456789/-_", max_size=30)
offsets_ms = st.integers(min_value=-300_000, max_value=300_000)


def mutate(text: str, data: st.DataObject) -> str:
    index = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.characters(min_codepoint=32, max_codepoint=126)
                            .filter(lambda char: char != text[index]))
    return text[:index] + replacement + text[index + 1:]


def mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    index = data.draw(st.integers(0, len(raw) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda byte: byte != raw[index]))
    return raw[:index] + bytes([replacement]) + raw[index + 1:]


@given(secret=secrets, body=bodies, path=paths, offset=offsets_ms)
def test_hubspot_sign_then_verify_passes(secret: str, body: bytes, path: str, offset: int) -> None:
    uri = hubspot_uri("https://hooks.shop.example", path, "a=1")
    stamp = str(int(NOW_MS) + offset)
    headers = hubspot_headers(secret=secret, body=body, timestamp=stamp, uri=uri)
    assert check_hubspot(headers, body=body, uri=uri, secrets=(secret,)) == "v3"


@given(secret=secrets, body=bodies.filter(bool), path=paths, offset=offsets_ms, data=st.data(),
       part=st.sampled_from(["body", "timestamp", "uri", "secret"]))
def test_hubspot_any_one_byte_change_fails(secret: str, body: bytes, path: str, offset: int,
                                           data: st.DataObject, part: str) -> None:
    uri = hubspot_uri("https://hooks.shop.example", path)
    stamp = str(int(NOW_MS) + offset)
    headers = hubspot_headers(secret=secret, body=body, timestamp=stamp, uri=uri)
    if part == "body":
        body = mutate_bytes(body, data)
    elif part == "timestamp":
        headers["X-HubSpot-Request-Timestamp"] = mutate(stamp, data)
    elif part == "uri":
        uri = mutate(uri, data)
    else:
        secret = mutate(secret, data)
    with pytest.raises(SignatureError):
        check_hubspot(headers, body=body, uri=uri, secrets=(secret,))


moments = st.integers(min_value=-300, max_value=300).map(lambda s: NOW + timedelta(seconds=s))
stamp_formats: st.SearchStrategy[Callable[[datetime], str]] = st.sampled_from([
    lambda m: m.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    lambda m: m.isoformat(),
    lambda m: str(int(m.timestamp())),
])


def klaviyo_body(payload: bytes) -> bytes:
    meta = json.dumps({"klaviyo_webhook_id": WEBHOOK_ID}).encode()
    return b'{"meta": ' + meta + b', "data": ' + json.dumps(payload.hex()).encode() + b"}"


@given(secret=secrets, payload=bodies, moment=moments, fmt=stamp_formats)
def test_klaviyo_sign_then_verify_passes(
    secret: str, payload: bytes, moment: datetime, fmt: Callable[[datetime], str],
) -> None:
    body = klaviyo_body(payload)
    stamp = fmt(moment)
    headers = klaviyo_headers(secret=secret, body=body, timestamp=stamp)
    assert check_klaviyo(headers, body=body, secrets=(secret,)) == WEBHOOK_ID


@given(secret=secrets, payload=bodies, moment=moments, fmt=stamp_formats, data=st.data(),
       part=st.sampled_from(["body", "timestamp", "secret"]))
def test_klaviyo_any_one_byte_change_fails(
    secret: str, payload: bytes, moment: datetime, fmt: Callable[[datetime], str],
    data: st.DataObject, part: str,
) -> None:
    body = klaviyo_body(payload)
    stamp = fmt(moment)
    headers = klaviyo_headers(secret=secret, body=body, timestamp=stamp)
    if part == "body":
        body = mutate_bytes(body, data)
    elif part == "timestamp":
        headers["Klaviyo-Timestamp"] = mutate(stamp, data)
    else:
        secret = mutate(secret, data)
    with pytest.raises(SignatureError):
        check_klaviyo(headers, body=body, secrets=(secret,))
