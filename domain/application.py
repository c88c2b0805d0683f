"""The command side: load a task, call one method, save — with conflicts retried."""

from __future__ import annotations

import copy
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import EventStore, IntegrityError, Notification, Recording

from domain import commands as c
from domain.errors import (
    ConcurrencyError,
    DomainError,
    RevokedKeyError,
    TaskNotFoundError,
    VersionConflictError,
)
from domain.ids import parse_id, public_id
from domain.task import Actor, Task, TaskEvent

MAX_ATTEMPTS = 12
# The keyword a save passes its recorder: the keys (Actor.principal) that must still be active
# when the events commit. The recorder checks them in the commit's own transaction and raises
# RevokedKeyError, saving nothing, when any is not.
ACTIVE_KEYS = "active_keys"


@dataclass(frozen=True)
class Written:
    """A task as it stands after a command, and the log position of its last event."""

    task: Task
    position: int


@dataclass(frozen=True)
class Job:
    """One command for a batch: create a task, or act on one (optionally at a version).

    Plain data, so that it can be handed to a writer in another process: ``command`` names
    the task's method (``Task.handle``), and ``only_agent`` hides every task but that agent's
    (an agent key's view: another agent's task is as missing as another tenant's)."""

    by: Actor
    create: c.CreateTask | None = None
    task_id: str | None = None
    command: c.Command | None = None
    expected_version: int | None = None
    only_agent: str | None = None
    check_key: bool = False  # the actor's key was not read for this request: confirm it as the events commit

    def apply(self, task: Task) -> None:
        """Run the command on the task: unseen is not found, before any other answer."""
        if self.only_agent is not None and task.agent_id != self.only_agent:
            raise TaskNotFoundError(self.task_id or public_id(task.id))
        if self.expected_version is not None and task.version != self.expected_version:
            raise VersionConflictError(self.expected_version, task.version)
        assert self.command is not None
        task.handle(self.command, self.by)


Outcome = Written | Exception


class AggregateCache:
    """A bounded LRU of tasks by id, for the one thread that runs batches.

    A cached task may be stale when another process wrote it; saving it then
    conflicts on (task, version) and the batch falls back to fresh state, and a
    command refused on cached state is re-checked on fresh state before it is
    refused — so the cache never changes an answer, only how fast it comes.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._tasks: OrderedDict[UUID, Task] = OrderedDict()

    def get(self, task_id: UUID) -> Task | None:
        """A copy of the cached task: the cached one was handed to the request that wrote
        it, which may still be presenting it on another thread."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        self._tasks.move_to_end(task_id)
        return task.clone()

    def put(self, task: Task) -> None:
        self._tasks[task.id] = task
        self._tasks.move_to_end(task.id)
        while len(self._tasks) > self.maxsize:
            self._tasks.popitem(last=False)

    def evict(self, task_id: UUID) -> None:
        self._tasks.pop(task_id, None)

    def clear(self) -> None:
        self._tasks.clear()


class RecordingEventStore(EventStore[UUID]):
    """The library's EventStore, whose put() builds each Recording and its Notification the
    way the mapper builds a StoredEvent (adapters/codec.py): the same fields, set at once
    instead of by a frozen dataclass __init__'s object.__setattr__ per field (seven an event,
    two events a create, on the writer thread)."""

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Recording[UUID]]:
        stored_events = list(map(self.mapper.to_stored_event, domain_events))
        positions = self.recorder.insert_events(stored_events, **kwargs)
        if not positions:
            return []
        recordings = []
        for event, stored, position in zip(domain_events, stored_events, positions, strict=True):
            notification = object.__new__(Notification)
            object.__setattr__(notification, "__dict__", {
                "originator_id": stored.originator_id, "originator_version": stored.originator_version,
                "topic": stored.topic, "state": stored.state, "id": position})
            recording = object.__new__(Recording)
            object.__setattr__(recording, "__dict__", {"domain_event": event, "notification": notification})
            recordings.append(recording)
        return recordings


class TaskApplication(Application[UUID]):
    """Tasks' event store and the commands that change them."""

    name = "tasks"
    env: ClassVar[dict[str, str]] = {"MAPPER_TOPIC": "adapters.codec:EventMapper"}
    events_appended = 0
    conflicts_retried = 0
    on_recorded: Callable[[], None] | None = None  # called after each commit of events (adapters wire it)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        if not all(type(obj) is Task for obj in objs):
            recordings = super().save(*objs, **kwargs)
        else:
            # The library's save() tells aggregates from events with isinstance() against
            # runtime-checkable Protocols, ~25 µs an object on Python 3.11: half the CPU of
            # a create. Tasks are known aggregates, so collect their events directly.
            processing = ProcessingEvent[UUID]()
            processing.saved_kwargs.update(kwargs)  # the recorder's: e.g. ACTIVE_KEYS
            for task in objs:
                processing.events.extend(task.collect_events())
                processing.aggregates[task.id] = task
            recordings = self._record(processing)
            self._take_snapshots(processing)
            self._notify(recordings)
        self.events_appended += len(recordings)
        return recordings

    def construct_event_store(self) -> EventStore[UUID]:
        return RecordingEventStore(mapper=self.mapper, recorder=self.recorder)

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        recordings = super()._record(processing_event)
        if self.on_recorded is not None:
            self.on_recorded()
        return recordings

    def create_task(self, command: c.CreateTask, by: Actor, check_key: bool = False) -> Written:
        task = Task.create(command, by)
        return Written(task, self._save(task, _active(by, check_key)))

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
        check_key: bool = False,
    ) -> Written:
        """Run one command on fresh state; a lost race is retried unless the
        caller pinned a version, in which case it is a version conflict."""
        for attempt in range(MAX_ATTEMPTS):
            task = self.get_task(task_id, by.tenant)
            if expected_version is not None and task.version != expected_version:
                raise VersionConflictError(expected_version, task.version)
            action(task)
            try:
                return Written(task, self._save(task, _active(by, check_key)))
            except IntegrityError:
                if expected_version is not None:
                    current = self.get_task(task_id, by.tenant).version
                    raise VersionConflictError(expected_version, current) from None
                self.conflicts_retried += 1
                time.sleep(random.uniform(0, 0.002 * attempt))
        raise ConcurrencyError(f"task {task_id} kept changing under this command; try again")

    def run_batch(self, jobs: Sequence[Job], cache: AggregateCache | None = None,
                  on_saved: Callable[[list[tuple[int, TaskEvent]]], None] | None = None) -> list[Outcome]:
        """Run many commands and save all their events in one transaction.

        Each job's outcome is the task as it stood right after that job (a copy
        is kept when a later job in the batch changes the same task), or the
        domain error that refused it. If the batch's commit conflicts with
        another writer, every job is run again on its own, on fresh state, so
        one loser never fails the others.

        ``on_saved`` is given the batch's committed events with their log positions,
        in log order, when they were saved together (not after a fall-back).

        The keys of the jobs that ask (``Job.check_key``) are confirmed in the commit's own
        transaction. If one was revoked meanwhile, nothing is saved: its jobs are refused
        (RevokedKeyError) and the batch runs again without them.
        """
        cache = cache or AggregateCache(0)
        touched: dict[UUID, Task] = {}
        holders: dict[UUID, int] = {}
        results: list[tuple[Task, list[TaskEvent]] | Exception] = []
        for index, job in enumerate(jobs):
            try:
                task, cached = self._batch_task(job, touched, cache)
                if (earlier := holders.get(task.id)) is not None:
                    held = results[earlier]
                    assert not isinstance(held, Exception)
                    results[earlier] = (copy.deepcopy(held[0]), held[1])
                before = 0 if job.create is not None else len(task.pending_events)
                if job.create is None:
                    try:
                        job.apply(task)
                    except DomainError:
                        if not cached:
                            raise
                        # Refused on cached state: ask again of fresh state before refusing.
                        cache.evict(task.id)
                        task = touched[task.id] = self.get_task(job.task_id or "", job.by.tenant)
                        before = len(task.pending_events)
                        job.apply(task)
                holders[task.id] = index
                results.append((task, task.pending_events[before:]))
            except DomainError as error:
                results.append(error)
        keys = frozenset(job.by.principal for job, result in zip(jobs, results)
                         if job.check_key and not isinstance(result, Exception))
        try:
            recordings = self.save(*touched.values(), **({ACTIVE_KEYS: keys} if keys else {}))
        except RevokedKeyError as revoked:
            # Nothing was saved and the cache holds only committed state (it hands out copies):
            # the others run again on what is stored, their tasks read afresh or copied again.
            others = [job for job in jobs if not (job.check_key and job.by.principal in revoked.keys)]
            again = iter(self.run_batch(others, cache, on_saved) if others else [])
            return [revoked if job.check_key and job.by.principal in revoked.keys else next(again)
                    for job in jobs]
        except IntegrityError:
            for task_id in touched:
                cache.evict(task_id)
            self.conflicts_retried += len(jobs)
            return [self._run_alone(job) for job in jobs]  # errors too: they may have met stale state
        except Exception:
            for task_id in touched:
                cache.evict(task_id)
            raise
        for task in touched.values():
            cache.put(task)
        if on_saved is not None and recordings:
            on_saved(sorted(((r.notification.id, r.domain_event) for r in recordings), key=_position))  # type: ignore[misc]
        positions = {id(r.domain_event): r.notification.id for r in recordings}
        return [result if isinstance(result, Exception) else Written(result[0], positions[id(result[1][-1])])
                for result in results]

    def _batch_task(self, job: Job, touched: dict[UUID, Task], cache: AggregateCache) -> tuple[Task, bool]:
        """The task a job acts on, and whether it came from the cache (and so may be stale)."""
        if job.create is not None:
            task = Task.create(job.create, job.by)
            touched[task.id] = task
            return task, False
        assert job.task_id is not None
        task_id = parse_id(job.task_id)
        if (task := touched.get(task_id)) is not None:
            cached = False
        elif (task := cache.get(task_id)) is not None:
            cached = True
        else:
            task, cached = self.get_task(job.task_id, job.by.tenant), False
        if task.tenant != job.by.tenant:
            raise TaskNotFoundError(job.task_id)
        touched[task_id] = task
        return task, cached

    def _run_alone(self, job: Job) -> Outcome:
        try:
            if job.create is not None:
                return self.create_task(job.create, job.by, job.check_key)
            assert job.task_id is not None
            # No version for execute(): job.apply checks it on each fresh load, after visibility.
            return self.execute(job.task_id, job.by, job.apply, check_key=job.check_key)
        except DomainError as error:
            return error

    def _save(self, task: Task, active_keys: frozenset[str] = frozenset()) -> int:
        recordings = self.save(task, **({ACTIVE_KEYS: active_keys} if active_keys else {}))
        return recordings[-1].notification.id


def _active(by: Actor, check_key: bool) -> frozenset[str]:
    return frozenset((by.principal,)) if check_key else frozenset()


def _position(saved: tuple[int, TaskEvent]) -> int:
    return saved[0]


__all__ = ["TaskApplication", "Written", "public_id"]
