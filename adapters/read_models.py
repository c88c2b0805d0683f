"""The read side's wiring: which views there are, who keeps them, and how a query
waits for a position and reports on each view."""

from __future__ import annotations

import time
from typing import Any

from adapters.config import Settings
from adapters.log_reader import LogReader
from adapters.metrics_view import TaskMetricsView
from adapters.sql import SqlStore
from domain.application import TaskApplication
from projections.runner import ProjectionRunner, ProjectionStatus

POLL = 0.02


def open_views(store: SqlStore, *, replace_older: bool = True) -> list[Any]:
    """Every view a process keeps or reads — the list view first — with their tables created.
    The API and a `tasks project` worker must keep the same ones. A command that only looks
    (``replace_older=False``) leaves a view of an older schema as it is, for whoever still reads it."""
    from adapters.event_index import open_event_index
    from adapters.list_view import TaskListView

    views = store.for_views()  # on SQLite, a file of its own
    list_view = TaskListView(views)
    list_view.create_table(replace_older=replace_older)
    return [list_view, *more_views(views, replace_older=replace_older), open_event_index(views, events=store)]


class ViewsAheadOfLogError(RuntimeError):
    """Raised at start when a view has applied events that the event log does not hold."""


def check_views_follow(app: TaskApplication, views: list[Any]) -> None:
    """Refuse views that are ahead of the log: they were kept from other events than these.

    On SQLite the views have a file of their own beside the database (``<database>.views``).
    A database file restored from a backup beside a newer views file would otherwise look
    caught up, and the views would silently skip the positions the log now gives again."""
    head = app.recorder.max_notification_id() or 0
    ahead = [f"{view.name} at {position}" for view in views if (position := view.position()) > head]
    if ahead:
        where = views[0].store.sqlite_path
        fix = (f"Delete the views' file {where} (and its -wal and -shm) and start again: the views are rebuilt "
               "from the log." if where else "Rebuild them: `tasks projections rebuild NAME`.")
        raise ViewsAheadOfLogError(
            f"the views are ahead of the event log ({', '.join(ahead)}; the log ends at {head}): they were "
            f"kept from other events than this database's, e.g. the database was restored from a backup. {fix}")


def more_views(store: SqlStore, *, replace_older: bool = True) -> list[Any]:
    """The views beside the list view, their tables created."""
    views: list[Any] = [TaskMetricsView(store)]
    for view in views:
        view.create_table(replace_older=replace_older)
    return views


def runners(app: TaskApplication, views: list[Any], settings: Settings, *,
            batch_size: int | None = None) -> list[ProjectionRunner]:
    """One runner per view, unless projections are kept by another process."""
    if settings.projections == "off":
        return []
    return [ProjectionRunner(app, view, poll_interval=settings.poll_interval, reader=LogReader(app),
                             **({"batch_size": batch_size} if batch_size else {}))
            for view in views]


def view_named(services: Any, name: str) -> Any:
    return next(view for view in services.views if view.name == name)


def runner_of(services: Any, view: Any) -> ProjectionRunner | None:
    return next((r for r in services.projections if r.view is view), None)


def wait_for(services: Any, view: Any, position: int) -> bool:
    """Wait, bounded by TASKS_READ_YOUR_WRITES_TIMEOUT, until ``view`` reflects ``position``."""
    if position <= 0:
        return True
    timeout = services.settings.read_your_writes_timeout
    runner = runner_of(services, view)
    if runner is not None and runner.status != "stopped":
        runner.poke()
        return runner.wait_for(position, timeout)
    deadline = time.monotonic() + timeout  # kept by another process: watch its tracking row
    while view.position() < position:
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


def describe(services: Any) -> list[ProjectionStatus]:
    """Every view's name, position, the log head, status and last error."""
    head = services.app.recorder.max_notification_id() or 0
    statuses = []
    for view in services.views:
        runner = runner_of(services, view)
        if runner is not None:
            found = runner.describe()
            statuses.append(ProjectionStatus(found.name, found.status, found.position, head, found.last_error))
        else:
            statuses.append(ProjectionStatus(view.name, "external", view.position(), head, None))
    return statuses
