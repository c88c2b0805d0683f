"""`tasks migrate`: move the embedded SQLite database into PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from adapters.config import DEFAULT_DATABASE
from adapters.migrate import MigrationError, MigrationReport, Progress, migrate, source_settings, target_settings

LABELS = {"copy": "Copying events ", "verify": "Verifying copy ", "views": "Building views "}


@click.command(name="migrate")
@click.option("--from", "source", envvar="TASKS_DATABASE", default=DEFAULT_DATABASE, show_default=True,
              help="The database to copy (default: TASKS_DATABASE).")
@click.option("--to", "target", required=True, metavar="postgresql://…",
              help="An empty PostgreSQL database to copy into.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 50_000),
              help="Events per read and per write transaction.")
def migrate_command(source: str, target: str, batch_size: int) -> None:
    """Copy the whole event log and the API keys into an empty PostgreSQL database,
    verify the copy event for event, and build the views there.

    Stop the servers that write to the source first: an event written during
    the copy is missing from the target, and the verification then fails.
    """
    try:
        to_settings = target_settings(target)  # a wrong target is the likelier mistake: say so first
        report = migrate(source_settings(source), to_settings, batch_size=batch_size, step=_bar)
    except MigrationError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # before the copy began: e.g. a source file that is not a database
        raise click.ClickException(f"the migration did not start: {type(error).__name__}: {error}") from None
    _summary(report)


@contextmanager
def _bar(step: str, total: int) -> Iterator[Progress]:
    """A progress bar on stderr for one step (click draws it only on a terminal)."""
    with click.progressbar(length=max(total, 1), label=LABELS.get(step, step), show_pos=True,
                           file=click.get_text_stream("stderr")) as bar:
        yield bar.update


def _summary(report: MigrationReport) -> None:
    phases = report.phases
    click.echo(
        f"Migrated {report.events} events of {report.tasks} tasks and {report.keys} API "
        f"{'key' if report.keys == 1 else 'keys'} "
        f"in {report.seconds:.1f} s ({report.events_per_second:,.0f} events/s; "
        f"copy {phases.copy:.1f} s, verify {phases.verify:.1f} s, views {phases.rebuild:.1f} s). "
        "The copy matches the source event for event."
    )
    if report.generated_key:
        click.echo(
            "The source had no active API key, so one admin key was created in the target. "
            f"It is shown only now:\n    {report.generated_key}"
        )
