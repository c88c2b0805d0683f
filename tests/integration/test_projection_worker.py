"""The projection worker (`tasks project`) as a real process: killed with SIGKILL in
the middle of its work, restarted, and every event applied exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from adapters.config import Settings
from adapters.list_view import TaskListView
from adapters.metrics_view import TaskMetricsView
from adapters.sql import open_store
from bench.workload import populate
from domain.application import TaskApplication
from tests.integration.test_projection_folds import folded, observed
from projections.task_metrics import micros

TASKS = Path(sys.executable).parent / "tasks"


def start_worker(settings: Settings, batch_size: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKS_DATABASE": settings.database, "TASKS_POLL_INTERVAL": "0.01"}
    with log.open("ab") as out:
        return subprocess.Popen([str(TASKS), "project", "--batch-size", str(batch_size)], env=env,
                                stdout=subprocess.DEVNULL, stderr=out)


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def test_a_killed_worker_resumes_and_applies_every_event_exactly_once(settings: Settings, tmp_path: Path) -> None:
    app = TaskApplication(env=settings.eventsourcing_env())
    populate(app, 60_000, per_save=500, pick=random.Random(4).randrange)
    head = app.recorder.max_notification_id()
    store = open_store(settings)
    views = [TaskListView(store.for_views()), TaskMetricsView(store.for_views())]
    for view in views:
        view.create_table()

    worker = start_worker(settings, 4000, tmp_path / "worker.log")
    try:
        assert wait_until(lambda: views[0].position() > 0, 60), "the worker never applied a batch"
        worker.send_signal(signal.SIGKILL)  # mid-run: the batch in flight is lost, not half-applied
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL
    stopped_at = [view.position() for view in views]
    assert min(stopped_at) < head, "the worker finished before it was killed; give it more events"

    worker = start_worker(settings, 4000, tmp_path / "worker.log")
    try:
        assert wait_until(lambda: all(view.position() == head for view in views), 120), \
            (tmp_path / "worker.log").read_text()
    finally:
        worker.terminate()
        worker.wait(10)

    now = micros(datetime.now(timezone.utc)) or 0
    lists, metrics = folded(app, "default", now)
    assert views[0].all_rows() == sorted(lists.values(), key=lambda r: r.task_id)
    assert {row.task_id: observed(row, now) for row in views[1].all_rows()} == metrics
    app.close()
    store.close()

