"""`tasks audit …` and `tasks history`: check the log, take checkpoints, read a task's timeline.

They read the database that TASKS_DATABASE names (as `tasks serve` does), or,
for `audit verify --export`, an NDJSON export taken with `GET /events`.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from adapters import audit_log as log
from adapters.config import Settings
from domain import audit
from domain.application import TaskApplication
from domain.errors import TaskNotFoundError
from domain.ids import parse_id
from domain.task import Task, TaskEvent

# Task view fields that change with every event, so they say nothing about what the event did.
_NOISE = {"taskId", "version", "trackingUrl", "timeline.updatedAt", "timeline.duration", "timeline.durationSeconds"}


def _app() -> TaskApplication:
    from adapters.sql import startup_lock

    settings = Settings.from_env()
    with startup_lock(settings):  # a server may be creating the same tables right now
        return TaskApplication(env=settings.eventsourcing_env())


def _key() -> bytes | None:
    key = os.environ.get("TASKS_AUDIT_KEY")
    return key.encode() if key else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def read_checkpoint(path: Path) -> audit.Checkpoint:
    """A checkpoint file, as `tasks audit checkpoint` writes it or as `GET /audit/checkpoint` answers."""
    raw = msgspec.json.decode(path.read_bytes())
    if isinstance(raw, dict) and "data" in raw and "success" in raw:
        raw = raw["data"]
    return msgspec.convert(raw, audit.Checkpoint)


@click.group("audit")
def audit_group() -> None:
    """Check that the event log was not altered, and take checkpoints of it."""


@audit_group.command()
@click.option("--tenant", default=None, help="Only this tenant's events (default: the whole log).")
@click.option("--position", type=click.IntRange(0), default=None, help="Up to this position (default: the head).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the checkpoint here (default: stdout). Keep it where the database's writers cannot.")
def checkpoint(tenant: str | None, position: int | None, out: Path | None) -> None:
    """Print a checkpoint: position, event count, root digest and each task's head (signed if TASKS_AUDIT_KEY)."""
    app = _app()
    try:
        head = app.recorder.max_notification_id() or 0
        at = head if position is None else min(position, head)
        entries = log.database_entries(app, until=at)
        if damaged := audit.verify_chains(entries):  # a checkpoint must not bless a log that is already broken
            for finding in damaged:
                click.echo(f"{finding.kind.upper()}: {finding.message}", err=True)
            raise click.ClickException("the log does not verify, so no checkpoint was taken")
        made = audit.make_checkpoint(entries, at, tenant=tenant, created_at=_now(), key=_key())
    finally:
        app.close()
    text = msgspec.json.format(msgspec.json.encode(made), indent=2) + b"\n"
    if out is None:
        sys.stdout.buffer.write(text)
    else:
        out.write_bytes(text)
        click.echo(f"checkpoint at position {made.position}: {made.event_count} events, root {made.root_digest}",
                   err=True)


@audit_group.command()
@click.option("--export", "export", type=click.File("rb"), default=None,
              help="Check this NDJSON export (GET /events with Accept: application/x-ndjson; '-' for stdin) "
                   "instead of the database.")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A saved checkpoint to check the log against (truncation, rewriting).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(export: Any, checkpoint_file: Path | None, as_json: bool) -> None:
    """Check every task's hash chain, and the log against a saved checkpoint. Exit status 0 only when all holds."""
    saved = None if checkpoint_file is None else read_checkpoint(checkpoint_file)
    if export is not None:
        entries = log.export_entries(export)
        source = f"export {export.name}"
    else:
        app = _app()
        try:
            entries = log.database_entries(app)
        finally:
            app.close()
        source = "database"
    report = audit.verify(entries, saved, _key())
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        _print_report(report, source, saved)
    sys.exit(0 if report.ok else 1)


def _print_report(report: audit.Report, source: str, saved: audit.Checkpoint | None) -> None:
    click.echo(f"checked {report.events} events of {report.tasks} tasks in the {source}")
    if saved is not None:
        scope = f" of tenant {saved.tenant}" if saved.tenant else ""
        click.echo(f"against the checkpoint at position {saved.position}{scope} "
                   f"({saved.event_count} events, root {saved.root_digest[:16]}…)")
        if saved.signature is not None and _key() is None:
            click.echo("note: the checkpoint is signed, but TASKS_AUDIT_KEY is not set, so its signature "
                       "was not checked")
    for finding in report.findings:
        click.echo(f"{finding.kind.upper()}: {finding.message}")
    click.echo("OK: every chain holds" + (" and the log matches the checkpoint" if saved else "") if report.ok
               else f"FAILED: {len(report.findings)} finding(s)")


# --- history ----------------------------------------------------------------------------------


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value and prefix in ("", "timeline"):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


def _view(task: Task) -> dict[str, Any]:
    from adapters.http import presenters

    return _flat(msgspec.to_builtins(presenters.task_view(task, "")))


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 60 else text[:57] + "…"


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'field: old → new' for every task-view field an event changed."""
    return [f"{name}: {_short(before.get(name))} → {_short(value)}" for name, value in after.items()
            if name not in _NOISE and before.get(name) != value and (before or value not in (None, [], {}))]


@click.command()
@click.argument("task_id")
@click.option("--as-of", "as_of", default=None, help="Print the task as it stood at this ISO 8601 time instead.")
def history(task_id: str, as_of: str | None) -> None:
    """Print a task's timeline: time, actor, event and the fields it changed (or its state --as-of a time)."""
    app = _app()
    try:
        try:
            events: list[TaskEvent] = list(app.events.get(parse_id(task_id)))  # type: ignore[arg-type]
        except TaskNotFoundError:
            events = []
        if not events:
            raise click.ClickException(f"no task {task_id}")
        if as_of is not None:
            _print_as_of(app, task_id, events, as_of)
            return
        task: Any = None
        before: dict[str, Any] = {}
        for event in events:
            task = event.mutate(task)
            after = _view(task)
            click.echo(f"{msgspec.to_builtins(event.timestamp)}  v{event.originator_version:<3} "
                       f"{event.actor:<22} {type(event).__name__:<20} ({event.request_id})")
            for line in changes(before, after):
                click.echo(f"      {line}")
            before = after
    finally:
        app.close()


def _print_as_of(app: TaskApplication, task_id: str, events: list[TaskEvent], as_of: str) -> None:
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        raise click.BadParameter(f"{as_of!r} is not an ISO 8601 time", param_hint="--as-of") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    version = max((e.originator_version for e in events if e.timestamp <= moment), default=None)
    if version is None:
        raise click.ClickException(f"{task_id} did not exist yet at {as_of} (created {events[0].timestamp})")
    task: Task = app.repository.get(parse_id(task_id), version=version)
    click.echo(f"{task_id} as of {as_of}: version {version}")
    from adapters.http import presenters

    click.echo(msgspec.json.format(msgspec.json.encode(presenters.task_view(task, "")), indent=2).decode())
