"""Configuration from the environment, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATABASE = "sqlite:///var/tasks.db"


class ConfigError(ValueError):
    """Raised when a setting cannot be understood."""


@dataclass(frozen=True)
class Settings:
    database: str = DEFAULT_DATABASE
    bootstrap_key: str | None = None
    max_body_bytes: int = 1_048_576
    read_your_writes_timeout: float = 2.0
    poll_interval: float = 0.05

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            return cls(
                database=env.get("TASKS_DATABASE") or DEFAULT_DATABASE,
                bootstrap_key=env.get("TASKS_BOOTSTRAP_KEY") or None,
                max_body_bytes=int(env.get("TASKS_MAX_BODY_BYTES", cls.max_body_bytes)),
                read_your_writes_timeout=float(env.get("TASKS_READ_YOUR_WRITES_TIMEOUT", cls.read_your_writes_timeout)),
                poll_interval=float(env.get("TASKS_POLL_INTERVAL", cls.poll_interval)),
            )
        except ValueError as error:
            raise ConfigError(f"invalid setting: {error}") from None

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file named by ``sqlite:///relative`` or ``sqlite:////absolute``."""
        parts = urlsplit(self.database)
        if parts.scheme != "sqlite":
            raise ConfigError(
                f"TASKS_DATABASE must be sqlite:///path (PostgreSQL comes later), not {self.database!r}"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ConfigError("TASKS_DATABASE names no file: use sqlite:///var/tasks.db")
        return Path(path)

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database."""
        path = self.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
