"""OAuth grants at rest, encrypted: the `GrantStore` port on SQLite or Redis.

Tokens are encrypted with `cryptography`'s `MultiFernet` over the keys of `DCB_SECRET_KEY`
(comma-separated: the first encrypts, every one decrypts, so a new key can be put first
while the old ones still read what they wrote; `rotate()` then re-encrypts every grant
with the first). No key is ever generated or stored beside the data: without the right
key a stored grant cannot be read, and `check()` says so (`SecretKeyError`) at start-up.

What is not secret (account, portal id, expiry, status) is stored in clear so that
`dcb status` and `installed_portals()` need no key.

An install's PKCE code verifier is kept with its single-use state until the callback takes
it, encrypted like the tokens.

- `SqliteGrantStore(path, cipher)`: tables `oauth_grants`, `oauth_states` and
  `oauth_verifiers` in the embedded store's file.
- `RedisGrantStore(client, keys, cipher)`: hash `RedisKeys.oauth_grants`, and one key with
  a TTL per OAuth state (`RedisKeys.oauth_state`) holding its expiry and verifier.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from adapters.storage.redis_keys import RedisKeys
from adapters.storage.sqlite_schema import connect, migrate
from connector.core.tokens import DISCONNECTED, GrantInfo, OAuthGrant

KEY_SETTING = "DCB_SECRET_KEY"
NEW_KEY = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class SecretKeyError(Exception):
    """The secret keys cannot encrypt or read the stored tokens; the message says what to
    do and never holds a key or a token."""


class TokenCipher:
    """Encrypts with the first key, decrypts with any (`MultiFernet`)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError(f"{KEY_SETTING} is not set")
        fernets = []
        for n, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise SecretKeyError(
                    f"{KEY_SETTING}: key {n} is not a Fernet key (32 url-safe base64-encoded "
                    f"bytes); make one with: {NEW_KEY}"
                ) from None
        self._cipher = MultiFernet(fernets)
        self.key_count = len(fernets)

    def __repr__(self) -> str:
        return f"TokenCipher(keys={self.key_count})"

    def encrypt(self, text: str) -> str:
        return self._cipher.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The text; raises `SecretKeyError` when no key reads it."""
        try:
            return self._cipher.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError("no key decrypts it") from None

    def rotate(self, token: str) -> str:
        """The same text, encrypted with the first key."""
        try:
            return self._cipher.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretKeyError("no key decrypts it") from None


class _Rows(Protocol):
    """Where the rows live (SQLite or Redis); a row is a dict of the columns."""

    def get(self, account: str) -> dict[str, Any] | None: ...
    def put(self, row: dict[str, Any]) -> None: ...
    def delete(self, account: str) -> bool: ...
    def all(self) -> list[dict[str, Any]]: ...
    def put_state(self, state: str, expires_at: float, verifier: str) -> None: ...
    def take_state(self, state: str, now: float) -> str | None: ...


class _GrantStore:
    """The `GrantStore` port over some rows; `cipher` None means no key is configured."""

    def __init__(self, rows: _Rows, cipher: TokenCipher | None) -> None:
        self._rows = rows
        self._cipher = cipher
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._cipher!r})"

    def _need_cipher(self) -> TokenCipher:
        if self._cipher is None:
            raise SecretKeyError(
                f"{KEY_SETTING} is not set: OAuth tokens are stored encrypted with it; "
                f"make one with: {NEW_KEY}"
            )
        return self._cipher

    def save(self, grant: OAuthGrant) -> None:
        cipher = self._need_cipher()
        tokens = json.dumps({"access": grant.access_token, "refresh": grant.refresh_token})
        row = {
            "account": grant.account,
            "platform": grant.platform,
            "account_id": grant.account_id,
            "tokens": cipher.encrypt(tokens),
            "expires_at": grant.expires_at,
            "status": grant.status,
            "reason": grant.reason,
            "updated_at": grant.updated_at,
        }
        with self._lock:
            self._rows.put(row)

    def load(self, account: str) -> OAuthGrant | None:
        row = self._rows.get(account)
        if row is None:
            return None
        try:
            tokens = json.loads(self._need_cipher().decrypt(row["tokens"]))
        except SecretKeyError as exc:
            raise SecretKeyError(_unreadable([account], str(exc))) from None
        return OAuthGrant(
            account=row["account"],
            platform=row["platform"],
            account_id=row["account_id"],
            access_token=tokens["access"],
            refresh_token=tokens["refresh"],
            expires_at=float(row["expires_at"]),
            status=row["status"],
            reason=row["reason"],
            updated_at=float(row["updated_at"]),
        )

    def grants(self) -> list[GrantInfo]:
        return sorted(
            (
                GrantInfo(
                    r["account"],
                    r["platform"],
                    r["account_id"],
                    float(r["expires_at"]),
                    r["status"],
                    r["reason"],
                    float(r["updated_at"]),
                )
                for r in self._rows.all()
            ),
            key=lambda g: g.account,
        )

    def installed(self, platform: str) -> frozenset[str]:
        return frozenset(g.account_id for g in self.grants() if g.platform == platform)

    def installed_portals(self) -> frozenset[str]:
        return self.installed("hubspot")

    def remove(self, account: str) -> bool:
        with self._lock:
            return self._rows.delete(account)

    def put_state(self, state: str, expires_at: float, verifier: str = "") -> None:
        sealed = self._need_cipher().encrypt(verifier) if verifier else ""
        self._rows.put_state(state, expires_at, sealed)

    def take_state(self, state: str, now: float) -> str | None:
        sealed = self._rows.take_state(state, now)
        if not sealed:
            return sealed
        try:
            return self._need_cipher().decrypt(sealed)
        except SecretKeyError:  # the key changed during the install: start again
            return None

    def mark_disconnected(self, account: str, reason: str, now: float) -> None:
        """Keep the grant but stop using it: its writes wait until a new install."""
        with self._lock:
            row = self._rows.get(account)
            if row is not None:
                self._rows.put({**row, "status": DISCONNECTED, "reason": reason, "updated_at": now})

    def check(self) -> int:
        """How many grants are stored; raises `SecretKeyError` when any cannot be read with
        the configured keys (a missing or wrong `DCB_SECRET_KEY`)."""
        rows = self._rows.all()
        if rows and self._cipher is None:
            raise SecretKeyError(
                f"{KEY_SETTING} is not set, but {len(rows)} OAuth grant(s) are stored "
                f"encrypted ({', '.join(sorted(r['account'] for r in rows))}): set the key "
                "they were stored with"
            )
        unreadable = []
        for row in rows:
            try:
                self._need_cipher().decrypt(row["tokens"])
            except SecretKeyError:
                unreadable.append(row["account"])
        if unreadable:
            raise SecretKeyError(_unreadable(unreadable, "no key decrypts them"))
        return len(rows)

    def rotate(self) -> int:
        """Re-encrypt every grant with the first key; how many were. Raises
        `SecretKeyError` (and changes nothing) when one cannot be read."""
        cipher = self._need_cipher()
        self.check()
        with self._lock:
            rows = self._rows.all()
            for row in rows:
                self._rows.put({**row, "tokens": cipher.rotate(row["tokens"])})
        return len(rows)

    def close(self) -> None:
        """Release the connection (SQLite); a no-op on Redis."""


def _unreadable(accounts: Sequence[str], why: str) -> str:
    return (
        f"{KEY_SETTING} cannot read the stored OAuth tokens of {', '.join(accounts)} ({why}): "
        "set the key they were stored with (keep it in the list, after a new one, to rotate)"
    )


class _SqliteRows:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = connect(str(path))
        migrate(self._connection)
        self._lock = threading.Lock()

    def _query(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._connection.execute(sql, tuple(args))

    def get(self, account: str) -> dict[str, Any] | None:
        with self._lock:
            cursor = self._connection.execute(
                "SELECT * FROM oauth_grants WHERE account = ?", (account,)
            )
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        return dict(zip(names, row, strict=True)) if row else None

    def put(self, row: dict[str, Any]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._query(
            f"INSERT OR REPLACE INTO oauth_grants ({columns}) VALUES ({marks})", list(row.values())
        )

    def delete(self, account: str) -> bool:
        return self._query("DELETE FROM oauth_grants WHERE account = ?", (account,)).rowcount > 0

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._connection.execute("SELECT * FROM oauth_grants ORDER BY account")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def put_state(self, state: str, expires_at: float, verifier: str) -> None:
        self._query("INSERT OR REPLACE INTO oauth_states VALUES (?, ?)", (state, expires_at))
        if verifier:
            self._query(
                "INSERT OR REPLACE INTO oauth_verifiers VALUES (?, ?, ?)",
                (state, verifier, expires_at),
            )

    def take_state(self, state: str, now: float) -> str | None:
        taken = self._query(
            "DELETE FROM oauth_states WHERE state = ? AND expires_at > ?", (state, now)
        ).rowcount
        with self._lock:
            row = self._connection.execute(
                "DELETE FROM oauth_verifiers WHERE state = ? RETURNING verifier", (state,)
            ).fetchone()
        self._query("DELETE FROM oauth_states WHERE expires_at <= ?", (now,))
        self._query("DELETE FROM oauth_verifiers WHERE expires_at <= ?", (now,))
        if taken == 0:
            return None
        return str(row[0]) if row else ""

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class _RedisRows:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys

    def get(self, account: str) -> dict[str, Any] | None:
        raw = self._redis.hget(self._keys.oauth_grants, account)
        return json.loads(raw) if raw else None

    def put(self, row: dict[str, Any]) -> None:
        self._redis.hset(self._keys.oauth_grants, row["account"], json.dumps(row))

    def delete(self, account: str) -> bool:
        return bool(self._redis.hdel(self._keys.oauth_grants, account))

    def all(self) -> list[dict[str, Any]]:
        rows = self._redis.hgetall(self._keys.oauth_grants)
        return [json.loads(raw) for _, raw in sorted(rows.items())]

    def put_state(self, state: str, expires_at: float, verifier: str) -> None:
        # The TTL is relative; the absolute expiry is checked again when it is taken.
        value = json.dumps({"expires_at": expires_at, "verifier": verifier})
        self._redis.set(self._keys.oauth_state(state), value, ex=3600)

    def take_state(self, state: str, now: float) -> str | None:
        raw = self._redis.getdel(self._keys.oauth_state(state))
        if raw is None:
            return None
        found = json.loads(raw)
        if not isinstance(found, dict):  # written before verifiers: the bare expiry
            found = {"expires_at": float(found), "verifier": ""}
        return str(found["verifier"]) if float(found["expires_at"]) > now else None


class SqliteGrantStore(_GrantStore):
    """Grants in the embedded store's SQLite file."""

    def __init__(self, path: Path, cipher: TokenCipher | None) -> None:
        self._sqlite = _SqliteRows(path)
        super().__init__(self._sqlite, cipher)

    def close(self) -> None:
        self._sqlite.close()


class RedisGrantStore(_GrantStore):
    """Grants in Redis, shared by every process."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, cipher: TokenCipher | None
    ) -> None:
        super().__init__(_RedisRows(client, keys), cipher)
