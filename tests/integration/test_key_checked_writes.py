"""A write whose key was not read for its request has the key confirmed by its own commit
(Job.check_key): a key revoked meanwhile saves nothing, and the rest of its batch is saved."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.config import Settings
from adapters.keys import KeyStore
from adapters.sql import open_store
from domain import commands as c
from domain.application import Job, TaskApplication, Written
from domain.errors import RevokedKeyError
from domain.ids import public_id
from domain.task import Actor


@pytest.fixture
def keys(app: TaskApplication, settings: Settings) -> Iterator[KeyStore]:
    store = open_store(settings)
    key_store = KeyStore(store)
    key_store.create_table()
    yield key_store
    store.close()


def actors(keys: KeyStore) -> tuple[Actor, Actor]:
    """An actor whose key is active, and one whose key was revoked."""
    active = keys.add("active-secret-0123456789", label="active")
    revoked = keys.add("revoked-secret-0123456789", label="revoked")
    keys.revoke(revoked)
    return Actor(active, "req_a"), Actor(revoked, "req_r")


def logged(app: TaskApplication) -> int:
    return app.recorder.max_notification_id() or 0


def test_a_batch_saves_the_jobs_of_active_keys_and_refuses_those_of_a_revoked_one(
        app: TaskApplication, keys: KeyStore) -> None:
    active, revoked = actors(keys)
    task_id = public_id(app.create_task(c.CreateTask(task="shared", agent_id="amy"), active).task.id)
    before = logged(app)
    jobs = [
        Job(by=active, create=c.CreateTask(task="mine", agent_id="amy"), check_key=True),
        Job(by=revoked, create=c.CreateTask(task="not mine", agent_id="amy"), check_key=True),
        Job(by=active, task_id=task_id, command=c.StartTask(), check_key=True),
        Job(by=revoked, task_id=task_id, command=c.ReportProgress(progress=50), check_key=True),
        Job(by=revoked, create=c.CreateTask(task="read for its request", agent_id="amy")),  # no check asked
    ]

    outcomes = app.run_batch(jobs)

    assert [type(o).__name__ for o in outcomes] == [
        "Written", "RevokedKeyError", "Written", "RevokedKeyError", "Written"]
    assert outcomes[1].keys == frozenset({revoked.principal})  # type: ignore[union-attr]
    saved = [o for o in outcomes if isinstance(o, Written)]
    assert logged(app) == before + 3  # a create each, and the start: nothing of the refused jobs
    assert sorted(o.position for o in saved) == list(range(before + 1, before + 4))
    task = app.get_task(task_id, "default")
    assert task.status == "in_progress" and task.progress != 50


def test_a_command_run_alone_confirms_its_key_too(app: TaskApplication, keys: KeyStore) -> None:
    active, revoked = actors(keys)
    task_id = public_id(app.create_task(c.CreateTask(task="x", agent_id="amy"), active).task.id)
    before = logged(app)

    with pytest.raises(RevokedKeyError):
        app.create_task(c.CreateTask(task="y"), revoked, check_key=True)
    with pytest.raises(RevokedKeyError):
        app.execute(task_id, revoked, lambda task: task.handle(c.StartTask(), revoked), check_key=True)
    assert logged(app) == before

    app.execute(task_id, active, lambda task: task.handle(c.StartTask(), active), check_key=True)
    assert logged(app) == before + 1


def test_a_batch_of_only_revoked_keys_saves_nothing(app: TaskApplication, keys: KeyStore) -> None:
    _, revoked = actors(keys)
    before = logged(app)

    outcomes = app.run_batch([Job(by=revoked, create=c.CreateTask(task=f"t{n}"), check_key=True)
                              for n in range(3)])

    assert all(isinstance(o, RevokedKeyError) for o in outcomes)
    assert logged(app) == before
