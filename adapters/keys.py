"""API keys: issued once in clear, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from adapters.sql import SqlStore

ROLES = ("admin", "client", "agent", "auditor", "analyst")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    agent_id TEXT,
    label TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)"""
INSERT = (
    "INSERT INTO api_keys (key_id, key_hash, tenant, role, agent_id, label, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_hash) DO NOTHING"
)
SELECT_BY_HASH = "SELECT key_id, key_hash, tenant, role, agent_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
COUNT_ACTIVE = "SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL"


@dataclass(frozen=True)
class Principal:
    """Who a valid key speaks for."""

    key_id: str
    tenant: str
    role: str
    agent_id: str | None = None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A key with 256 bits of entropy, recognisable by its prefix."""
    return "tk_" + secrets.token_urlsafe(32)


class KeyStore:
    """Keys in the service's own database."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._sql = store.dialect.sql

    def create_table(self) -> None:
        with self.store.transaction(commit=True) as cursor:
            if self.store.dialect.is_postgres:  # concurrent starters wait for the first
                cursor.execute("SELECT pg_advisory_xact_lock(72631)")
            cursor.execute(CREATE_TABLE)

    def add(self, secret: str, tenant: str = "default", role: str = "admin",
            agent_id: str | None = None, label: str | None = None) -> str:
        """Store a key (idempotent for the same secret); returns its id."""
        key_id = "key_" + hash_key(secret)[:16]
        now = datetime.now(timezone.utc).isoformat()
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(INSERT), (key_id, hash_key(secret), tenant, role, agent_id, label, now))
        return key_id

    def authenticate(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(self._sql(SELECT_BY_HASH), (digest,))
            row = cursor.fetchone()
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None
        return Principal(row["key_id"], row["tenant"], row["role"], row["agent_id"])

    def count_active(self) -> int:
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(COUNT_ACTIVE)
            return int(cursor.fetchone()["n"])
