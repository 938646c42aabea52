"""The embedded store's tables. One database file in `DCB_DATA_DIR`, in WAL mode."""

from __future__ import annotations

import sqlite3

#: Bump when the tables change; `migrate` refuses a database from a newer version.
#: 2: `context_versions` and the decision cache `decisions` (an older connector would
#: commit contexts without raising their versions, so cached decisions would go stale).
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    event TEXT NOT NULL,
    platforms TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_lease ON events (lease_until, id);
CREATE TABLE IF NOT EXISTS dedup (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at);
CREATE TABLE IF NOT EXISTS identities (
    account TEXT NOT NULL,
    identifier TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    PRIMARY KEY (account, identifier)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contexts (
    account TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    context TEXT NOT NULL,
    PRIMARY KEY (account, profile_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS context_versions (
    account TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (account, profile_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    account TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    context_version INTEGER NOT NULL,
    rules_version TEXT NOT NULL,
    stored_at REAL NOT NULL,
    decision TEXT NOT NULL,
    PRIMARY KEY (account, profile_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_age ON decisions (stored_at);
CREATE TABLE IF NOT EXISTS pending (
    account TEXT NOT NULL,
    platform TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    properties TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    version INTEGER NOT NULL,
    sending_version INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    first_queued_at REAL NOT NULL,
    PRIMARY KEY (account, platform, profile_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_due ON pending (account, platform, due_at);
CREATE TABLE IF NOT EXISTS written (
    account TEXT NOT NULL,
    platform TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    properties TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    written_at REAL NOT NULL,
    PRIMARY KEY (account, platform, profile_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    platform TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    properties TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS timers (
    account TEXT NOT NULL,
    profile_key TEXT NOT NULL,
    fire_at REAL NOT NULL,
    dedup_key TEXT NOT NULL,
    event TEXT NOT NULL,
    platforms TEXT NOT NULL,
    PRIMARY KEY (account, profile_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timers_due ON timers (fire_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_grants (
    account TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    account_id TEXT NOT NULL,
    tokens TEXT NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oauth_states (
    state TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oauth_verifiers (
    state TEXT PRIMARY KEY,
    verifier TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""


class SchemaError(RuntimeError):
    """The database was written by a newer version of the connector."""


def connect(path: str) -> sqlite3.Connection:
    """A connection tuned for durability: WAL, and an fsync at every commit."""
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=30000")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def migrate(connection: sqlite3.Connection) -> None:
    """Create the tables (an older database gains the ones it lacks), or refuse a database
    from a newer version; raises `SchemaError`."""
    connection.executescript(SCHEMA)
    row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise SchemaError(
            f"the data directory was written by a newer dcb-connector (schema {row[0]}, "
            f"this version reads {SCHEMA_VERSION})"
        )
    if row is None or int(row[0]) < SCHEMA_VERSION:
        connection.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
