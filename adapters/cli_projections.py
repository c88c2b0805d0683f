"""`tasks project` (the projection worker) and `tasks projections rebuild|status`."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import replace
from typing import Any

import click

from adapters.config import Settings


def _open(settings: Settings, *, replace_older: bool = True) -> tuple[Any, Any, list[Any]]:
    from adapters import read_models
    from adapters.sql import open_store, startup_lock
    from domain.application import TaskApplication

    with startup_lock(settings):  # an API process may be creating the same tables right now
        app = TaskApplication(env=settings.eventsourcing_env())
        store = open_store(settings, settings.pool_size)
        return app, store, read_models.open_views(store, replace_older=replace_older)


@click.command()
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Events applied per transaction.")
def project(batch_size: int) -> None:
    """Keep every view up to date from the event log, as its own process (no HTTP).

    Run it beside `tasks serve` started with TASKS_PROJECTIONS=off. Stop it with
    SIGTERM or Ctrl-C; whatever it stops in the middle of is applied again, exactly
    once, at the next start.
    """
    from adapters.read_models import ViewsAheadOfLogError, check_views_follow
    from adapters.read_models import runners as make_runners
    from projections.runner import FollowerGroup

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    app, store, views = _open(settings)
    try:
        check_views_follow(app, views)
    except ViewsAheadOfLogError as error:
        app.close()
        store.close()
        raise click.ClickException(str(error)) from None
    runners = make_runners(app, views, replace(settings, projections="inline"), batch_size=batch_size)
    # One follower reads each batch once and applies it to every view in one transaction. On SQLite
    # the views share one file and its one write lock, so a follower per view only took turns; on
    # PostgreSQL a follower per view read and decoded each batch three times and committed three
    # times: ~30% more of the worker's CPU a create, and ~12% fewer creates (README: "One follower
    # for the views, on PostgreSQL too").
    group = FollowerGroup(runners, views[0].store.together, batch_size=batch_size,
                          poll_interval=settings.poll_interval)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    group.start()
    click.echo(f"projecting {', '.join(v.name for v in views)} (batches of {batch_size})", err=True)
    try:
        while not stop.wait(5.0):
            for runner in runners:
                found = runner.describe()
                if found.status == "failed":
                    click.echo(f"{found.name}: failed at {found.position}: {found.last_error}", err=True)
    finally:
        group.stop()
        app.close()
        store.close()


@click.group()
def projections() -> None:
    """Inspect and rebuild the read models (views)."""


@projections.command()
def status() -> None:
    """Each view's position, the log head and the lag.

    It changes nothing: a view whose table an older build made (an older schema) is shown as
    it is, for the processes that still read it; the next `tasks serve` or `tasks project` of
    this build replaces it."""
    settings = Settings.from_env()
    app, store, views = _open(settings, replace_older=False)
    try:
        head = app.recorder.max_notification_id() or 0
        for view in views:
            position = view.position()
            older = view.older_table() if hasattr(view, "older_table") else None
            note = f"  (table {older} of an older schema: this build's next start rebuilds it)" \
                if older else ""
            click.echo(f"{view.name:<16} position {position:>10}  head {head:>10}  "
                       f"lag {head - position:>10}{note}")
    finally:
        app.close()
        store.close()


@projections.command()
@click.argument("name")
@click.option("--batch-size", default=20_000, show_default=True, type=click.IntRange(1, 1_000_000))
def rebuild(name: str, batch_size: int) -> None:
    """Rebuild the view NAME from position 0 beside the live copy, then swap it in.

    Queries keep being answered from the live copy until the swap, which is one transaction.
    """
    from adapters.log_reader import LogReader
    from projections.rebuild import rebuild as rebuild_view

    settings = Settings.from_env()
    app, store, views = _open(settings)
    try:
        view = next((v for v in views if v.name == name), None)
        rebuildable = [v.name for v in views if hasattr(v, "beside")]
        if view is None or name not in rebuildable:
            raise click.BadParameter(f"no rebuildable view {name!r}; there are: {', '.join(rebuildable)}",
                                     param_hint="NAME")
        head = app.recorder.max_notification_id() or 0
        with click.progressbar(length=head, label=f"rebuilding {name}", file=click.get_text_stream("stderr"),
                               show_pos=True) as bar:
            def advance(count: int, position: int) -> None:
                bar.update(min(position, bar.length) - bar.pos)

            position = rebuild_view(app, view, batch_size=batch_size, progress=advance,
                                    reader=LogReader(app))
        click.echo(f"{name} rebuilt and swapped in at position {position}")
    finally:
        app.close()
        store.close()
