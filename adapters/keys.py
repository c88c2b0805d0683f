"""API keys: issued once in clear, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from adapters.changes import KEYS
from adapters.sql import SqlStore

ROLES = ("admin", "client", "agent", "auditor", "analyst")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")

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
# Which of some keys (by id) are active: a write's own transaction asks it of the keys it was
# sent with when they were not read for the request (domain/application.py ACTIVE_KEYS).
ACTIVE_AMONG = "SELECT key_id FROM api_keys WHERE revoked_at IS NULL AND key_id IN ({marks})"
SELECT_ALL = "SELECT key_id, tenant, role, agent_id, label, created_at, revoked_at FROM api_keys"
REVOKE = "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL"


class InvalidGrantError(ValueError):
    """Raised when a key cannot be issued as asked (unknown role, agent binding)."""


@dataclass(frozen=True)
class Principal:
    """Who a valid key speaks for."""

    key_id: str
    tenant: str
    role: str
    agent_id: str | None = None

    @property
    def only_agent(self) -> str | None:
        """The one agent whose tasks this key may see (an agent key), or None for every task
        of its tenant: another agent's task is as missing to it as another tenant's."""
        return self.agent_id if self.role == "agent" else None


@dataclass(frozen=True)
class KeyRecord:
    """A key as an administrator sees it: never its secret."""

    key_id: str
    tenant: str
    role: str
    agent_id: str | None
    label: str | None
    created_at: str
    revoked_at: str | None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str:
    return "key_" + hash_key(secret)[:16]


def new_secret() -> str:
    """A key with 256 bits of entropy, recognisable by its prefix."""
    return "tk_" + secrets.token_urlsafe(32)


def check_grant(tenant: str, role: str, agent_id: str | None) -> None:
    """Refuse a key that could not work: unknown role, bad names, an agent key without its agent."""
    if role not in ROLES:
        raise InvalidGrantError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not _NAME.match(tenant):
        raise InvalidGrantError(f"tenant must be 1-128 letters, digits or . _ : @ -, not {tenant!r}")
    if role == "agent" and not agent_id:
        raise InvalidGrantError("an agent key needs the agentId it acts for")
    if role != "agent" and agent_id:
        raise InvalidGrantError("only an agent key is bound to an agentId")
    if agent_id is not None and not _NAME.match(agent_id):
        raise InvalidGrantError(f"agentId must be 1-128 letters, digits or . _ : @ -, not {agent_id!r}")


def principal_of(row: Any, digest: str) -> Principal | None:
    """The principal of an active key's row (SELECT_BY_HASH), or None."""
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    return Principal(row["key_id"], row["tenant"], row["role"], row["agent_id"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class KeyStore:
    """Keys in the service's own database. A revocation takes effect at once in every
    process: each request reads its key's row, or on SQLite keeps it only while the
    shared key counter (adapters/changes.py) says no key changed since."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._sql = store.dialect.sql

    def create_table(self) -> None:
        self.store.create_tables(CREATE_TABLE)

    def add(self, secret: str, tenant: str = "default", role: str = "admin",
            agent_id: str | None = None, label: str | None = None) -> str:
        """Store a key (idempotent for the same secret); returns its id."""
        check_grant(tenant, role, agent_id)
        key_id = key_id_of(secret)
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(INSERT), (key_id, hash_key(secret), tenant, role, agent_id, label, _now()))
        self._changed()
        return key_id

    def issue(self, tenant: str, role: str, agent_id: str | None = None,
              label: str | None = None) -> tuple[str, str]:
        """A new random key: (its id, its secret). The secret is not kept."""
        secret = new_secret()
        return self.add(secret, tenant, role, agent_id, label), secret

    def authenticate(self, secret: str) -> Principal | None:
        digest = hash_key(secret)
        with self.store.reading() as cursor:
            cursor.execute(self._sql(SELECT_BY_HASH), (digest,))
            row = cursor.fetchone()
        return principal_of(row, digest)

    def list(self, tenant: str | None = None) -> list[KeyRecord]:
        """Every key (of one tenant, if given), oldest first."""
        sql, params = SELECT_ALL, ()
        if tenant is not None:
            sql, params = sql + " WHERE tenant = ?", (tenant,)
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(self._sql(sql + " ORDER BY created_at, key_id"), params)
            rows = cursor.fetchall()
        return [KeyRecord(r["key_id"], r["tenant"], r["role"], r["agent_id"], r["label"], r["created_at"],
                          r["revoked_at"]) for r in rows]

    def get(self, key_id: str, tenant: str | None = None) -> KeyRecord | None:
        return next((k for k in self.list(tenant) if k.key_id == key_id), None)

    def revoke(self, key_id: str, tenant: str | None = None) -> KeyRecord | None:
        """Revoke a key (of one tenant, if given); None when there is no such key.
        Revoking twice keeps the first time."""
        sql, params = REVOKE, (_now(), key_id)
        if tenant is not None:
            sql, params = sql + " AND tenant = ?", (*params, tenant)
        with self.store.transaction(commit=True) as cursor:
            cursor.execute(self._sql(sql), params)
        self._changed()
        return self.get(key_id, tenant)

    def _changed(self) -> None:
        """Tell every process's key cache (hot_reads.SqliteReads) to read keys again."""
        if self.store.changes is not None:
            self.store.changes.bump(KEYS)

    def count_active(self) -> int:
        with self.store.transaction(commit=False) as cursor:
            cursor.execute(COUNT_ACTIVE)
            return int(cursor.fetchone()["n"])
