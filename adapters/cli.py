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
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str, port: int, log_level: str) -> None:
    """Serve the API (database from TASKS_DATABASE, default sqlite:///var/tasks.db)."""
    import uvicorn

    uvicorn.run("app:create_app", factory=True, host=host, port=port, log_level=log_level)


from adapters import cli_projections  # noqa: E402  (each area registers its commands here)

main.add_command(cli_projections.project); main.add_command(cli_projections.projections)  # noqa: E702
