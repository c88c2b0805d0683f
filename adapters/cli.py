"""The `tasks` command line."""

from __future__ import annotations

import click


@click.group()
def main() -> None:
    """Tasks API: serve it and operate it.

    Each area keeps its commands in its own module (adapters/cli_*.py) and is
    registered at the end of this file.
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (each with its own writer and projections; use PostgreSQL for more than one).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the API (database from TASKS_DATABASE, default sqlite:///var/tasks.db). Logs are JSON lines."""
    import uvicorn

    from adapters.http.observability import configure_json_logging

    configure_json_logging(log_level)
    uvicorn.run("app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, log_config=None, access_log=False)


# --- each area's commands, registered here ------------------------------------
from adapters import cli_audit, cli_projections  # noqa: E402
from adapters.cli_keys import keys  # noqa: E402
from adapters.cli_migrate import migrate_command  # noqa: E402

main.add_command(migrate_command)
main.add_command(keys)
main.add_command(cli_audit.audit_group)
main.add_command(cli_audit.history)
main.add_command(cli_projections.project)
main.add_command(cli_projections.projections)
