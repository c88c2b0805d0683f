"""SQLite: the list view's indexes stay full as tasks are added. New tasks arrive in creation
order; an index that puts the newest first (DESC) takes each one at its left edge, and every page
split there leaves two half-full pages behind, so the views' file grows twice as fast as its
data and the worker writes more pages per create (README: "The list's indexes, ascending")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.config import Settings
from adapters.list_view import INDEXES
from app import build_services
from domain.application import TaskApplication
from domain.commands import PRIORITIES, CreateTask
from domain.task import Actor, Task
from projections.queries import ListTasksQuery
from tests.conftest import KEY

TASKS = 3000


def seed(database: str) -> None:
    """TASKS tasks in creation order, a few agents and teams, as a busy service appends them."""
    app = TaskApplication(env=Settings(database=database).eventsourcing_env())
    by = Actor(principal="key_test", request_id="req_test", tenant="default")
    try:
        for start in range(0, TASKS, 100):
            commands = [CreateTask(task=f"task {i}", agent_id=f"agent-{i % 7}", team_id=f"team-{i % 3}",
                                   priority=PRIORITIES[i % 4])  # type: ignore[arg-type]
                        for i in range(start, start + 100)]
            app.save(*(Task.create(command, by) for command in commands))
    finally:
        app.close()


def leaf_fill(views_file: str, table: str) -> dict[str, tuple[int, float]]:
    """Each of the list view's indexes: its leaf pages and how full they are (0..1)."""
    names = [ddl.format(table=table).split(" EXISTS ")[1].split(" ON ")[0] for ddl in INDEXES]
    with sqlite3.connect(f"file:{views_file}?mode=ro", uri=True) as conn:
        found = {}
        for name in names:
            pages, size, unused = conn.execute(
                "SELECT COUNT(*), SUM(pgsize), SUM(unused) FROM dbstat WHERE name = ? AND pagetype = 'leaf'",
                (name,)).fetchone()
            found[name] = (pages, 1 - unused / size)
    return found


def test_the_list_views_indexes_stay_mostly_full_as_tasks_are_added(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/tasks.db"
    seed(database)
    services = build_services(Settings(database=database, bootstrap_key=KEY))  # catches the views up
    try:
        view = next(v for v in services.views if v.name == "task_list")
        rows, total, _ = view.list_tasks("default", ListTasksQuery(agent_id="agent-3", status="assigned"))
        agent_3 = range(3, TASKS, 7)
        assert total == len(agent_3) and rows[0].task == f"task {agent_3[-1]}"  # newest first
        with view.store.transaction(commit=False) as cursor:
            table = view.table(cursor)
    finally:
        services.close()

    fill = leaf_fill(f"{tmp_path}/tasks.db.views", table)
    assert len(fill) == len(INDEXES)
    creation_ordered = {name: value for name, value in fill.items()
                        if name.endswith(("_created", "_status", "_agent", "_team", "_recent", "_priority"))}
    assert len(creation_ordered) == 7 and all(pages >= 5 for pages, _ in creation_ordered.values())
    assert {name: round(full, 2) for name, (_, full) in fill.items() if full < 0.7} == {}
