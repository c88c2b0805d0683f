"""How fast `tasks migrate` moves a SQLite log into PostgreSQL.

Writes a SQLite database of about 100k events (every event type, three
tenants), starts a throwaway PostgreSQL cluster on a free loopback port, runs
the real `tasks migrate` command into a fresh database and prints its figures.

    .venv/bin/python bench/migrate.py [--tasks 13000] [--batch-size 1000]

Bounded: the command is killed after 120 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.config import Settings  # noqa: E402
from domain.application import TaskApplication  # noqa: E402
from tests.pg_cluster import PgCluster  # noqa: E402
from tests.workload import fill  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=13_000, help="tasks to write (~7.6 events each)")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tasks-migrate-bench-") as folder:
        source = f"sqlite:///{folder}/tasks.db"
        app = TaskApplication(env=Settings(database=source).eventsourcing_env())
        began = time.perf_counter()
        events = fill(app, args.tasks, per_commit=200)
        app.close()
        size = Path(folder, "tasks.db").stat().st_size
        print(f"source: {events} events of {args.tasks} tasks, {size / 1e6:.1f} MB, "
              f"written in {time.perf_counter() - began:.1f} s", flush=True)

        cluster = PgCluster()
        try:
            cluster.start()
            target = cluster.new_database()
            script = Path(sys.executable).with_name("tasks")
            began = time.perf_counter()
            run = subprocess.run(
                [str(script), "migrate", "--from", source, "--to", target, "--batch-size", str(args.batch_size)],
                capture_output=True, text=True, timeout=120, check=False,
            )
            wall = time.perf_counter() - began
        finally:
            cluster.stop()
        if run.returncode != 0:
            sys.exit(f"migrate failed:\n{run.stderr}")
        print(run.stdout.strip())
        print(f"wall clock of the command (process start included): {wall:.1f} s, "
              f"{events / wall:,.0f} events/s (batch size {args.batch_size})")


if __name__ == "__main__":
    main()
