"""The encrypted OAuth token store, on SQLite and on Redis: encryption at rest, key
rotation, single-use states, and a missing or wrong key as a clear start-up error."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.token_store import (
    RedisGrantStore,
    SecretKeyError,
    SqliteGrantStore,
    TokenCipher,
)
from connector.cli import main
from connector.core.tokens import OAuthGrant
from connector.oauth_setup import open_grants
from connector.runtime import STORE_FILE
from connector.settings import Settings, SettingsError

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
Open = Callable[[list[str]], SqliteGrantStore | RedisGrantStore]


def grant(portal: str = "555", access: str = "access-secret-1") -> OAuthGrant:
    return OAuthGrant(
        account=f"hubspot-{portal}",
        platform="hubspot",
        account_id=portal,
        access_token=access,
        refresh_token=f"refresh-secret-{portal}",
        expires_at=1_800_000_000.0,
        updated_at=1_799_998_200.0,
    )


@pytest.fixture(params=["sqlite", "redis"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Open, Callable[[], str]]]:
    """Opens the store with some keys, and reads everything stored raw (to look for secrets)."""
    if request.param == "sqlite":
        path = tmp_path / STORE_FILE

        def open_sqlite(keys: list[str]) -> SqliteGrantStore:
            return SqliteGrantStore(path, TokenCipher(keys) if keys else None)

        def raw_sqlite() -> str:
            with sqlite3.connect(path) as db:
                return repr(db.execute("SELECT * FROM oauth_grants").fetchall())

        yield open_sqlite, raw_sqlite
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    keys = RedisKeys()

    def open_redis(secret_keys: list[str]) -> RedisGrantStore:
        return RedisGrantStore(client, keys, TokenCipher(secret_keys) if secret_keys else None)

    def raw_redis() -> str:
        return repr(client.hgetall(keys.oauth_grants))

    yield open_redis, raw_redis


def test_tokens_are_stored_encrypted_and_read_back(opener: tuple[Open, Callable[[], str]]) -> None:
    open_store, raw = opener
    store = open_store([OLD])
    store.save(grant())
    assert "access-secret-1" not in raw() and "refresh-secret-555" not in raw()
    loaded = store.load("hubspot-555")
    assert loaded == grant()
    assert "secret" not in repr(loaded) and "secret" not in repr(store)
    assert store.installed_portals() == {"555"}
    assert store.load("hubspot-1") is None


def test_disconnect_keeps_the_grant_and_remove_erases_it(
    opener: tuple[Open, Callable[[], str]],
) -> None:
    store = opener[0]([OLD])
    store.save(grant())
    store.mark_disconnected("hubspot-555", "BAD_REFRESH_TOKEN", 5.0)
    info = store.grants()[0]
    assert (info.status, info.reason) == ("disconnected", "BAD_REFRESH_TOKEN")
    assert store.installed_portals() == {"555"}
    assert store.remove("hubspot-555") and not store.remove("hubspot-555")
    assert store.installed_portals() == frozenset()


def test_rotation_reencrypts_with_the_first_key(opener: tuple[Open, Callable[[], str]]) -> None:
    open_store, raw = opener
    open_store([OLD]).save(grant())
    before = raw()
    rotated = open_store([NEW, OLD])
    assert rotated.load("hubspot-555") == grant()  # the old key still reads
    assert rotated.rotate() == 1
    assert raw() != before
    assert open_store([NEW]).load("hubspot-555") == grant()  # the old key may now go
    with pytest.raises(SecretKeyError, match="cannot read the stored OAuth tokens of hubspot-555"):
        open_store([OLD]).load("hubspot-555")


def test_a_missing_or_wrong_key_with_stored_tokens_fails_the_check(
    opener: tuple[Open, Callable[[], str]],
) -> None:
    open_store, _ = opener
    assert open_store([]).check() == 0  # nothing stored: no key needed
    open_store([OLD]).save(grant())
    with pytest.raises(SecretKeyError, match="DCB_SECRET_KEY is not set, but 1 OAuth grant"):
        open_store([]).check()
    with pytest.raises(SecretKeyError, match="no key decrypts them") as caught:
        open_store([NEW]).check()
    assert OLD not in str(caught.value) and NEW not in str(caught.value)
    assert open_store([NEW, OLD]).check() == 1


def test_states_are_single_use_and_expire(opener: tuple[Open, Callable[[], str]]) -> None:
    store = opener[0]([OLD])
    store.put_state("s1", 100.0)
    store.put_state("s2", 100.0)
    assert store.take_state("s1", 50.0) == ""  # taken, no verifier
    assert store.take_state("s1", 50.0) is None
    assert store.take_state("s2", 100.0) is None  # expired
    assert store.take_state("never", 1.0) is None


def test_a_pkce_verifier_is_kept_encrypted_with_its_state_and_taken_once(
    opener: tuple[Open, Callable[[], str]], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = opener[0]([OLD])
    verifier = "pkce-verifier-" + "v" * 50
    store.put_state("s1", 100.0, verifier)
    store.put_state("s2", 100.0, verifier)
    if isinstance(store, SqliteGrantStore):
        with sqlite3.connect(tmp_path / STORE_FILE) as db:
            raw = repr(db.execute("SELECT * FROM oauth_verifiers").fetchall())
    else:
        client = request.getfixturevalue("redis_client")
        raw = repr([client.get(k) for k in client.keys("*oauth_state*")])
    assert raw.count("verifier") + raw.count("gAAAA") >= 2  # both stored, sealed
    assert verifier not in raw
    assert store.take_state("s1", 50.0) == verifier
    assert store.take_state("s1", 50.0) is None
    assert store.take_state("s2", 100.0) is None  # expired: its verifier with it


def test_a_key_that_is_not_a_fernet_key_is_refused() -> None:
    with pytest.raises(SecretKeyError, match="key 2 is not a Fernet key"):
        TokenCipher([OLD, "not-a-key"])
    with pytest.raises(SettingsError, match="DCB_SECRET_KEY: key 1 is not a Fernet key"):
        Settings.from_env({"DCB_SECRET_KEY": "short"})


def test_start_up_with_stored_tokens_and_no_key_is_a_settings_error(tmp_path: Path) -> None:
    store = SqliteGrantStore(tmp_path / STORE_FILE, TokenCipher([OLD]))
    store.save(grant())
    store.close()
    with pytest.raises(SettingsError) as caught:
        open_grants(Settings(data_dir=tmp_path))
    assert "DCB_SECRET_KEY is not set, but 1 OAuth grant(s) are stored" in str(caught.value)
    wrong = Settings.from_env({"DCB_DATA_DIR": str(tmp_path), "DCB_SECRET_KEY": NEW})
    with pytest.raises(SettingsError, match="cannot read the stored OAuth tokens"):
        open_grants(wrong)


def test_dcb_serve_refuses_to_start_with_a_wrong_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteGrantStore(tmp_path / STORE_FILE, TokenCipher([OLD]))
    store.save(grant())
    store.close()
    monkeypatch.setenv("DCB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DCB_SECRET_KEY", NEW)
    assert main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "cannot read the stored OAuth tokens of hubspot-555" in err
    assert "Traceback" not in err and NEW not in err


def test_dcb_secrets_rotate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteGrantStore(tmp_path / STORE_FILE, TokenCipher([OLD]))
    store.save(grant())
    store.close()
    monkeypatch.setenv("DCB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DCB_SECRET_KEY", f"{NEW},{OLD}")
    assert main(["secrets", "rotate"]) == 0
    assert "re-encrypted 1 OAuth grant(s)" in capsys.readouterr().out
    assert SqliteGrantStore(tmp_path / STORE_FILE, TokenCipher([NEW])).load("hubspot-555")
    monkeypatch.setenv("DCB_SECRET_KEY", OLD)  # the old key alone no longer reads them
    assert main(["secrets", "rotate"]) == 1
    assert "cannot read" in capsys.readouterr().err
