"""The command side: load a task, call one method, save — with conflicts retried."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain import commands as c
from domain.errors import ConcurrencyError, TaskNotFoundError, VersionConflictError
from domain.ids import parse_id, public_id
from domain.task import Actor, Task, TaskEvent

MAX_ATTEMPTS = 12


@dataclass(frozen=True)
class Written:
    """A task as it stands after a command, and the log position of its last event."""

    task: Task
    position: int


class TaskApplication(Application[UUID]):
    """Tasks' event store and the commands that change them."""

    name = "tasks"
    env: ClassVar[dict[str, str]] = {"MAPPER_TOPIC": "adapters.codec:EventMapper"}

    def create_task(self, command: c.CreateTask, by: Actor) -> Written:
        task = Task.create(command, by)
        return Written(task, self._save(task))

    def get_task(self, task_id: str, tenant: str, version: int | None = None) -> Task:
        """The task as it stands now (or at a version); another tenant's is not found."""
        try:
            task: Task = self.repository.get(parse_id(task_id), version=version)
        except AggregateNotFoundError:
            raise TaskNotFoundError(task_id) from None
        if task.tenant != tenant:
            raise TaskNotFoundError(task_id)
        return task

    def history(self, task_id: str, tenant: str) -> Sequence[TaskEvent]:
        """Every event of one task, oldest first."""
        self.get_task(task_id, tenant)
        return list(self.events.get(parse_id(task_id)))  # type: ignore[arg-type]

    def execute(
        self,
        task_id: str,
        by: Actor,
        action: Callable[[Task], None],
        expected_version: int | None = None,
    ) -> Written:
        """Run one command on fresh state; a lost race is retried unless the
        caller pinned a version, in which case it is a version conflict."""
        for attempt in range(MAX_ATTEMPTS):
            task = self.get_task(task_id, by.tenant)
            if expected_version is not None and task.version != expected_version:
                raise VersionConflictError(expected_version, task.version)
            action(task)
            try:
                return Written(task, self._save(task))
            except IntegrityError:
                if expected_version is not None:
                    current = self.get_task(task_id, by.tenant).version
                    raise VersionConflictError(expected_version, current) from None
                time.sleep(random.uniform(0, 0.002 * attempt))
        raise ConcurrencyError(f"task {task_id} kept changing under this command; try again")

    def _save(self, task: Task) -> int:
        recordings = self.save(task)
        return recordings[-1].notification.id


__all__ = ["TaskApplication", "Written", "public_id"]
