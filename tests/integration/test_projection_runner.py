"""The runner is supervised: a failing view stops only itself, says why and where,
and is retried with back-off until it gets through — without skipping an event."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from adapters.config import Settings
from adapters.list_view import TaskListView
from adapters.log_reader import LogReader
from adapters.metrics_view import TaskMetricsView
from adapters.services import Services
from adapters.sql import open_store
from app import build_services
from domain import commands as c
from domain.application import Job
from domain.task import Actor, TaskEvent, TaskUpdated
from projections.rebuild import rebuild
from projections.runner import FollowerGroup, ProjectionRunner


class FlakyListView(TaskListView):
    """The list view, with a handler that fails on notes saying "poison" until it is healed."""

    healed = False

    def fold(self, row, event: TaskEvent, position: int) -> bool:  # type: ignore[no-untyped-def]
        if isinstance(event, TaskUpdated) and event.notes == "poison" and not self.healed:
            raise ValueError("cannot digest this note")
        return super().fold(row, event, position)


def eventually(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_failing_view_stops_alone_reports_where_and_recovers_without_skipping(settings: Settings) -> None:
    services = build_services(settings)
    flaky = FlakyListView(open_store(settings), name="flaky_list")
    flaky.create_table()
    runner = ProjectionRunner(services.app, flaky, batch_size=2, poll_interval=0.01, max_backoff=0.05,
                              reader=LogReader(services.app))
    runner.start()
    try:
        by = Actor("key_test", "req_test")
        first = services.app.create_task(c.CreateTask(task="fine"), by)
        assert eventually(lambda: runner.position >= first.position)
        task_id = f"task_{first.task.id.hex}"
        poisoned = services.app.execute(task_id, by, lambda t: t.update(c.UpdateTask(notes="poison"), by))
        later = services.app.create_task(c.CreateTask(task="after the poison"), by)

        assert eventually(lambda: runner.describe().status == "failed")
        state = runner.describe()
        assert state.position == first.position < poisoned.position  # stopped before the failing event
        assert state.last_error == "ValueError: cannot digest this note"
        assert state.head == later.position and state.lag == later.position - first.position
        services.written(later.position)  # the other views went on
        assert services.list_view.position() == later.position

        flaky.healed = True  # the fix is deployed; the retry gets through
        assert eventually(lambda: runner.position == later.position)
        assert runner.describe().status == "running" and runner.describe().last_error is None
        assert flaky.all_rows() == services.list_view.all_rows()
    finally:
        runner.stop()
        services.close()


def test_a_rebuild_is_swapped_in_while_the_live_copy_keeps_answering(settings: Settings) -> None:
    services = build_services(settings)
    try:
        by = Actor("key_test", "req_test")
        for i in range(20):
            written = services.app.create_task(c.CreateTask(task=f"t{i}", agent_id="amy"), by)
        services.written(written.position)
        before = services.list_view.all_rows()
        seen_during: list[int] = []

        def progress(applied: int, position: int) -> None:
            seen_during.append(len(services.list_view.all_rows()))  # the live copy answers meanwhile

        position = rebuild(services.app, services.list_view, batch_size=5, progress=progress)
        assert copies(services) == 2  # the replaced copy stays until the next swap, for readers in flight

        assert position == written.position
        assert seen_during and set(seen_during) == {20}
        assert services.list_view.all_rows() == before
        after = services.app.create_task(c.CreateTask(task="after the swap"), by)
        services.written(after.position)  # the live runner follows the new copy from where it stands
        assert len(services.list_view.all_rows()) == 21
        assert services.list_view.position() == after.position

        rebuild(services.app, services.list_view)  # the copy replaced last time goes now, the latest stays
        assert copies(services) == 2
    finally:
        services.close()


def copies(services: Services) -> int:
    """How many tables of the list view exist (the live one, and the one it replaced)."""
    with services.store.for_views().transaction(commit=False) as cursor:
        cursor.execute("SELECT name FROM projection_tracking")
        return sum(str(found["name"]).startswith("task_list_s") for found in cursor.fetchall())


def test_one_follower_reads_each_batch_once_for_every_view_and_a_failing_view_holds_back_only_itself(
        settings: Settings) -> None:
    """FollowerGroup (`tasks project` on SQLite, the start-up catch-up): one reader for a store's views."""
    services = build_services(replace(settings, projections="off"))  # no follower of the service's own
    store = services.views[0].store
    healthy, metrics = TaskListView(store, name="group_list"), TaskMetricsView(store, name="group_metrics")
    flaky = FlakyListView(store, name="group_flaky")
    reads: list[int] = []
    reader = LogReader(services.app)

    def counted(after: int, limit: int) -> list[tuple[int, TaskEvent]]:
        reads.append(after)
        return reader(after, limit)

    runners = []
    for view in (healthy, flaky, metrics):
        view.create_table()
        runners.append(ProjectionRunner(services.app, view, batch_size=4, poll_interval=0.01,
                                        max_backoff=0.05, reader=counted))
    group = FollowerGroup(runners, store.together, batch_size=4, poll_interval=0.01, max_backoff=0.05)
    by = Actor("key_test", "req_test")
    try:
        first = [services.app.create_task(c.CreateTask(task=f"t{i}", agent_id="amy"), by) for i in range(10)]
        assert group.catch_up() == 10
        assert reads == [0, 4, 8, 10]  # one read a batch for the three views, not one a view
        assert {view.position() for view in (healthy, flaky, metrics)} == {first[-1].position}

        group.start()
        task_id = f"task_{first[0].task.id.hex}"
        poisoned = services.app.execute(task_id, by, lambda t: t.update(c.UpdateTask(notes="poison"), by))
        later = services.app.create_task(c.CreateTask(task="after the poison"), by)
        failing = runners[1]
        assert eventually(lambda: failing.describe().status == "failed")
        state = failing.describe()
        assert state.position == first[-1].position < poisoned.position  # stopped before the failing event
        assert state.last_error == "ValueError: cannot digest this note"
        # the others go on
        assert eventually(lambda: healthy.position() == metrics.position() == later.position)
        assert runners[0].describe().status == runners[2].describe().status == "running"

        flaky.healed = True  # the fix is deployed; its retry gets through and it joins the group again
        assert eventually(lambda: failing.position == later.position)
        assert failing.describe().status == "running" and failing.describe().last_error is None
        assert flaky.all_rows() == healthy.all_rows()
        again = services.app.create_task(c.CreateTask(task="together again"), by)
        assert eventually(lambda: {view.position() for view in (healthy, flaky, metrics)} == {again.position})
        group.stop()
        alone = TaskMetricsView(store, name="group_metrics_alone")
        alone.create_table()
        ProjectionRunner(services.app, alone, reader=reader).catch_up()
        assert alone.all_rows() == metrics.all_rows()  # each event applied once, as by a follower of its own
    finally:
        group.stop()
        services.close()


def test_a_view_that_fails_while_the_service_catches_up_at_start_stops_only_itself(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tasks serve` catches every view up before it listens (one FollowerGroup); a failing view
    is reported and retried, as at run time, while the service starts and the others catch up."""
    services = build_services(replace(settings, projections="off"))  # events only: the views stay behind
    by = Actor("key_test", "req_test")
    try:
        first = services.app.create_task(c.CreateTask(task="fine"), by)
        task_id = f"task_{first.task.id.hex}"
        services.app.execute(task_id, by, lambda t: t.update(c.UpdateTask(notes="poison"), by))
        last = services.app.create_task(c.CreateTask(task="after the poison"), by)
    finally:
        services.close()
    fold = TaskMetricsView.fold
    healed = False

    def poisoned(self, row, event, position):  # type: ignore[no-untyped-def]
        if isinstance(event, TaskUpdated) and event.notes == "poison" and not healed:
            raise ValueError("cannot digest this note")
        return fold(self, row, event, position)

    monkeypatch.setattr(TaskMetricsView, "fold", poisoned)
    restarted = build_services(settings)  # keeps its views in-process: catches them up before it listens
    try:
        metrics = next(r for r in restarted.projections if r.view.name == "task_metrics")
        assert restarted.list_view.position() == last.position  # the others caught up before it listened
        assert eventually(lambda: metrics.describe().status == "failed")
        assert metrics.describe().last_error == "ValueError: cannot digest this note"
        healed = True
        assert eventually(lambda: metrics.position == last.position)
        assert metrics.describe().status == "running"
    finally:
        restarted.close()


def test_the_start_up_catch_up_applies_every_batch_to_the_views_together(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Batches of the catch-up's full size (2,000 events), each applied to the three views in one
    transaction. On PostgreSQL that transaction is one pipeline; views sharing its one cursor read
    a stale result after a large executemany now and then ("the last operation didn't produce
    records"), and the batch fell back to a transaction per view."""
    services = build_services(replace(settings, projections="off"))  # events only: the views stay behind
    by = Actor("key_test", "req_test")
    try:
        for n in range(12):
            outcomes = services.app.run_batch(
                [Job(by=by, create=c.CreateTask(task=f"task {n}.{i}", agent_id=f"agent-{i % 7}"))
                 for i in range(1000)])
        last = outcomes[-1].position  # type: ignore[union-attr]
    finally:
        services.close()

    with caplog.at_level("WARNING", logger="projections.runner"):
        restarted = build_services(settings)
    try:
        assert [r.position for r in restarted.projections] == [last] * len(restarted.projections)
        assert [r.getMessage() for r in caplog.records] == []
    finally:
        restarted.close()
