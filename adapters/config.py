"""Configuration from the environment, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_DATABASE = "sqlite:///var/tasks.db"


class ConfigError(ValueError):
    """Raised when a setting cannot be understood."""


@dataclass(frozen=True)
class PostgresTarget:
    """The parts of a postgresql:// URL."""

    dbname: str
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> PostgresTarget:
        parts = urlsplit(url)
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ConfigError("TASKS_DATABASE names no database: use postgresql://user:pass@host:5432/dbname")
        try:
            port = parts.port or 5432
        except ValueError:
            raise ConfigError(f"TASKS_DATABASE has an invalid port: {url!r}") from None
        return cls(
            dbname=dbname,
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )


@dataclass(frozen=True)
class Settings:
    database: str = DEFAULT_DATABASE
    bootstrap_key: str | None = None
    max_body_bytes: int = 1_048_576
    read_your_writes_timeout: float = 2.0
    poll_interval: float = 0.05
    pool_size: int = 5
    audit_key: str | None = None  # signs audit checkpoints (HMAC-SHA256) when set
    rate_limit: float = 0.0  # requests per second per key; 0 = no limit
    rate_burst: int = 0  # bucket size; 0 = twice the rate (at least 1)
    idempotency_ttl: float = 86_400.0  # seconds an Idempotency-Key is remembered
    idempotency_wait: float = 10.0  # seconds a repeat waits for the first request before 409
    max_json_depth: int = 10  # nesting of a free-form object (context, budget, result.data, error.details)
    max_json_bytes: int = 65_536  # encoded size of one free-form object
    projections: str = "inline"  # inline: this process keeps its views; off: a `tasks project` worker does
    task_cache_mb: int = 64  # memory for presented tasks that GET serves while they are current

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def number(name: str, kind: type[int] | type[float], default: float) -> Any:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                value = kind(text)
            except ValueError:
                raise ConfigError(f"{name} must be a {kind.__name__}, not {text!r}") from None
            if value <= 0:
                raise ConfigError(f"{name} must be greater than 0, not {text!r}")
            return value

        def choice(name: str, allowed: tuple[str, ...], default: str) -> str:
            text = env.get(name) or default
            if text not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {text!r}")
            return text

        return cls(
            database=env.get("TASKS_DATABASE") or DEFAULT_DATABASE,
            bootstrap_key=env.get("TASKS_BOOTSTRAP_KEY") or None,
            max_body_bytes=number("TASKS_MAX_BODY_BYTES", int, cls.max_body_bytes),
            read_your_writes_timeout=number("TASKS_READ_YOUR_WRITES_TIMEOUT", float, cls.read_your_writes_timeout),
            poll_interval=number("TASKS_POLL_INTERVAL", float, cls.poll_interval),
            pool_size=number("TASKS_POOL_SIZE", int, cls.pool_size),
            audit_key=env.get("TASKS_AUDIT_KEY") or None,
            rate_limit=number("TASKS_RATE_LIMIT", float, cls.rate_limit),
            rate_burst=number("TASKS_RATE_BURST", int, cls.rate_burst),
            idempotency_ttl=number("TASKS_IDEMPOTENCY_TTL", float, cls.idempotency_ttl),
            idempotency_wait=number("TASKS_IDEMPOTENCY_WAIT", float, cls.idempotency_wait),
            max_json_depth=number("TASKS_MAX_JSON_DEPTH", int, cls.max_json_depth),
            max_json_bytes=number("TASKS_MAX_JSON_BYTES", int, cls.max_json_bytes),
            projections=choice("TASKS_PROJECTIONS", ("inline", "off"), cls.projections),
            task_cache_mb=number("TASKS_TASK_CACHE_MB", int, cls.task_cache_mb),
        )

    @property
    def is_postgres(self) -> bool:
        return urlsplit(self.database).scheme in ("postgresql", "postgres")

    @property
    def postgres(self) -> PostgresTarget:
        if not self.is_postgres:
            raise ConfigError(f"not a postgresql:// URL: {self.database!r}")
        return PostgresTarget.from_url(self.database)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file named by ``sqlite:///relative`` or ``sqlite:////absolute``."""
        parts = urlsplit(self.database)
        if parts.scheme != "sqlite":
            raise ConfigError(
                f"TASKS_DATABASE must be sqlite:///path or postgresql://user:pass@host:port/db, "
                f"not {self.database!r}"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError("TASKS_DATABASE names no file: use sqlite:///var/tasks.db")
        return Path(path)

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database."""
        if self.is_postgres:
            pg = self.postgres
            return {
                "PERSISTENCE_MODULE": "adapters.pg:TasksPostgresFactory",  # one round trip per batch
                "POSTGRES_DBNAME": pg.dbname,
                "POSTGRES_HOST": pg.host,
                "POSTGRES_PORT": str(pg.port),
                "POSTGRES_USER": pg.user,
                "POSTGRES_PASSWORD": pg.password,
                "POSTGRES_POOL_SIZE": str(self.pool_size),
                "POSTGRES_MAX_OVERFLOW": str(self.pool_size * 2),
                "POSTGRES_CONNECT_TIMEOUT": "3",
                "POSTGRES_PRE_PING": "y",
                "POSTGRES_LOCK_TIMEOUT": "10",
            }
        path = self.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # The library's SQLite persistence, with a statement cache and batched inserts.
        return {"PERSISTENCE_MODULE": "adapters.recorder:SQLiteFactory", "SQLITE_DBNAME": str(path)}
