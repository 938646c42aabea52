"""Identity tokens: sign then verify passes, any change fails, rotation keeps old tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.events import ProfileRef
from webhooks.identity import sign_identity, verify_identity
from webhooks.signatures import Failure, SignatureError

SECRET = "shop-identity-secret"


def test_an_email_token_names_the_lower_case_email() -> None:
    token = sign_identity(SECRET, "email", " Ada@Example.com ")
    assert verify_identity(token, secrets=[SECRET]) == ProfileRef(email="ada@example.com")


def test_a_customer_id_token_names_the_external_id() -> None:
    token = sign_identity(SECRET, "external_id", "u-42")
    assert verify_identity(token, secrets=[SECRET]) == ProfileRef(external_id="u-42")


def test_the_readmes_server_side_recipe_makes_the_same_token() -> None:
    """README's signing example (plain Python, no dcb-connector import) agrees with us."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    (recipe,) = [b for b in blocks if "def dcb_identity" in b]
    namespace: dict[str, Any] = {}
    exec(recipe, namespace)
    made = namespace["dcb_identity"](SECRET, " Ada@Example.com")
    assert made == sign_identity(SECRET, "email", "ada@example.com")
    assert verify_identity(made, secrets=[SECRET]) == ProfileRef(email="ada@example.com")


def test_every_configured_secret_verifies_during_a_rotation() -> None:
    old = sign_identity("old-secret", "email", "ada@example.com")
    assert verify_identity(old, secrets=["new-secret", "old-secret"]).email == "ada@example.com"
    with pytest.raises(SignatureError) as caught:
        verify_identity(old, secrets=["new-secret"])
    assert caught.value.reason is Failure.BAD_SIGNATURE


@pytest.mark.parametrize(
    "token",
    ["", "no-dot", "!!!.!!!", "ZW1haWw6YUBiLmM", "a." + "b" * 600],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(SignatureError):
        verify_identity(token, secrets=[SECRET])


def test_a_token_for_another_subject_kind_is_refused() -> None:
    subject = b"hubspot_id:123"
    mac = hmac.new(SECRET.encode(), subject, hashlib.sha256).digest()
    token = (
        base64.urlsafe_b64encode(subject).rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    )
    with pytest.raises(SignatureError, match="names no email or id"):
        verify_identity(token, secrets=[SECRET])


def test_without_a_secret_no_token_verifies() -> None:
    token = sign_identity(SECRET, "email", "ada@example.com")
    with pytest.raises(SignatureError) as caught:
        verify_identity(token, secrets=["", ""])
    assert caught.value.reason is Failure.NO_SECRET


def test_the_email_in_a_token_cannot_be_swapped() -> None:
    token = sign_identity(SECRET, "email", "ada@example.com")
    forged_subject = base64.urlsafe_b64encode(b"email:bob@example.com").rstrip(b"=").decode()
    forged = forged_subject + "." + token.split(".")[1]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_identity(forged, secrets=[SECRET])


emails = st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,12}\.[a-z]{2,6}", fullmatch=True)


@given(secret=st.text(min_size=1, max_size=40), email=emails)
def test_sign_then_verify_passes(secret: str, email: str) -> None:
    token = sign_identity(secret, "email", email)
    assert verify_identity(token, secrets=[secret]).email == email


@given(email=emails, data=st.data())
def test_any_one_character_change_fails(email: str, data: st.DataObject) -> None:
    token = sign_identity(SECRET, "email", email)
    index = data.draw(st.integers(0, len(token) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    char = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[index]))
    tampered = token[:index] + char + token[index + 1 :]
    with pytest.raises(SignatureError):
        verify_identity(tampered, secrets=[SECRET])
