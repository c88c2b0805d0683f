"""The running parts one process holds, wired by app.py and shared with the edges."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError

from adapters.config import Settings
from adapters.http.idempotency import IdempotencyStore
from adapters.keys import KeyStore
from adapters.list_view import TaskListView
from adapters.sql import SqlStore
from adapters.http.observability import Metrics
from adapters.http.presenters import SummaryCache
from adapters.writer import CommandWriter
from domain.application import TaskApplication
from projections.runner import ProjectionRunner, apply_together


@dataclass
class Services:
    settings: Settings
    app: TaskApplication
    list_view: TaskListView
    keys: KeyStore
    store: SqlStore
    projections: list[ProjectionRunner] = field(default_factory=list)
    generated_key: str | None = None
    writer: CommandWriter | None = None
    metrics: Metrics = field(default_factory=Metrics)
    idempotency: IdempotencyStore | None = None
    views: list[Any] = field(default_factory=list)  # every read model, also when no runner is in-process
    reads: Any = None  # adapters.hot_reads: the key and task-event lookups of every request
    task_cache: Any = None  # adapters.http.task_cache.TaskViewCache: presented tasks by id, coherent by version
    summaries: SummaryCache = field(default_factory=SummaryCache)  # list/stats: summaries, answers by position
    checkpointer: Any = None  # SQLite: adapters.recorder.WalCheckpointer (checkpoints off the commits)

    @property
    def runner(self) -> ProjectionRunner:
        """The list view's runner."""
        return next(r for r in self.projections if r.view is self.list_view)

    def apply_written(self, batch: list[tuple[int, Any]]) -> None:
        """The writer's hook after a commit: bring this process's views up to the batch at once,
        before its requests are answered (read-your-writes without a round trip through the log)."""
        stores = {id(runner.view.store) for runner in self.projections}
        if len(self.projections) > 1 and len(stores) == 1:  # one transaction for every view
            try:
                if apply_together(self.projections, self.projections[0].view.store.together, batch):
                    return
            except (OperationalError, InterfaceError):  # the database is away: the followers catch up later
                for runner in self.projections:
                    runner.poke()
                return
        for runner in self.projections:
            runner.apply_written(batch)

    def written(self, position: int) -> None:
        """After a commit: wake the projections and wait, bounded, until they have it,
        so that a client that writes and then lists sees its own write."""
        behind = [runner for runner in self.projections if runner.position < position]
        for runner in behind:
            runner.poke()
        deadline = time.monotonic() + self.settings.read_your_writes_timeout
        for runner in behind:
            runner.wait_for(position, max(0.0, deadline - time.monotonic()))

    async def written_async(self, position: int) -> None:
        """written() for the event loop."""
        behind = [runner for runner in self.projections if runner.position < position]
        for runner in behind:  # usually none: the writer applied the batch before answering
            runner.poke()
        deadline = time.monotonic() + self.settings.read_your_writes_timeout
        for runner in behind:
            await runner.wait_async(position, max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        for runner in self.projections:
            runner.stop()
        self.app.close()
        self.store.close()
