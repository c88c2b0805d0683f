"""The running parts one process holds, wired by app.py and shared with the edges."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.config import Settings
from adapters.keys import KeyStore
from adapters.list_view import TaskListView
from adapters.sql import SqlStore
from domain.application import TaskApplication
from projections.runner import ProjectionRunner


@dataclass
class Services:
    settings: Settings
    app: TaskApplication
    list_view: TaskListView
    runner: ProjectionRunner
    keys: KeyStore
    store: SqlStore
    generated_key: str | None = None
    closers: list[object] = field(default_factory=list)

    def written(self, position: int) -> None:
        """After a commit: wake the projections and wait, bounded, until they have it,
        so that a client that writes and then lists sees its own write."""
        self.runner.poke()
        self.runner.wait_for(position, self.settings.read_your_writes_timeout)

    def close(self) -> None:
        self.runner.stop()
        self.app.close()
        self.store.close()
