"""CPU the writer thread spends per create, stage by stage (issue #7).

    .venv/bin/python -m bench.writer_cpu                    # SQLite in a fresh temporary folder
    .venv/bin/python -m bench.writer_cpu --database postgresql://user:pass@127.0.0.1:5432/bench
    .venv/bin/python -m bench.writer_cpu --profile          # cProfile of the whole batch, top 30

Builds the real services, stops their writer and view followers, and then does
what the writer does for a batch of creates, stage by stage, in this thread:
``Task.create`` for each command (the seed's create body, with an agent: one event
a task), ``TaskApplication.save`` of the batch, and the batch applied to
each view (one at a time, then all views in one transaction, as the writer does).
Also ``run_batch`` end to end (create + save + views together). Figures are
thread CPU time (``time.thread_time``) per create, the best of --rounds, so they
vary far less than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from typing import Any

import msgspec
from eventsourcing.persistence import Tracking

from adapters.config import Settings
from app import build_services
from bench.stages import Stages, profile
from domain import commands as c
from domain.application import Job
from domain.task import Actor, Task
from projections.runner import apply_together

BODY = (b'{"task":"Analyze Q4 revenue trends and create executive report","agentId":"amy",'
        b'"context":{"dataSource":"revenue_q4_2024.csv","focusAreas":["growth","churn","expansion"],'
        b'"targetAudience":"C-suite executives"},"priority":"high","deadline":"2024-10-30T17:00:00Z",'
        b'"deliverables":["pdf-report","presentation","data-analysis"]}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--batch", type=int, default=64, help="creates per batch (per commit)")
    parser.add_argument("--rounds", type=int, default=40, help="batches per stage; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of run_batch instead")
    parser.add_argument("--contend", action="store_true",
                        help="with a busy Python thread beside, as the event loop is under load: it holds the "
                             "GIL ~50 µs at a time, so each GIL release costs the writer a hand-over")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="writer-cpu-") as folder:
        database = args.database or f"sqlite:///{folder}/tasks.db"
        services = build_services(Settings(database=database, bootstrap_key="k" * 32))
        assert services.writer is not None
        services.writer.stop()
        for runner in services.projections:
            runner.stop()
        stop = threading.Event()
        busy = threading.Thread(target=event_loop_like, args=(stop,), daemon=True)
        if args.contend:
            busy.start()
        try:
            run(services, args)
        finally:
            stop.set()
            if args.contend:
                busy.join()
            services.close()


def event_loop_like(stop: threading.Event) -> None:
    """Pure-Python work in slices of ~50 µs, each followed by a call that releases the GIL."""
    while not stop.is_set():
        total = 0
        for number in range(1000):
            total += number * number
        time.sleep(0)


def run(services: Any, args: argparse.Namespace) -> None:
    app = services.app
    command = msgspec.json.decode(BODY, type=c.CreateTask)
    by = Actor("bench", "req-1")
    n = args.batch
    views = [runner.view for runner in services.projections]

    def written(tasks: list[Task]) -> list[tuple[int, Any]]:
        recordings = app.save(*tasks)
        return sorted(((r.notification.id, r.domain_event) for r in recordings), key=lambda pair: pair[0])

    def apply(view: Any, batch: list[tuple[int, Any]]) -> None:
        view.apply_batch(batch, Tracking(view.name, batch[-1][0]), after=batch[0][0] - 1)

    if args.profile:
        profile(args.rounds, lambda jobs: app.run_batch(jobs, None, lambda b: together(views, b)),
                lambda: [Job(by=by, create=command) for _ in range(n)])
        return

    stages = Stages(n)
    timed = stages.timed
    for _ in range(args.rounds):
        tasks = timed("Task.create", lambda: [Task.create(command, by) for _ in range(n)])
        batch = timed("TaskApplication.save", lambda: written(tasks))
        for view in views:
            timed(f"view {view.name} alone", lambda: apply(view, batch))
        tasks = [Task.create(command, by) for _ in range(n)]
        batch = written(tasks)
        timed("views together", lambda: together(views, batch))
        jobs = [Job(by=by, create=command) for _ in range(n)]
        timed("run_batch (create+save+views)", lambda: app.run_batch(jobs, None, lambda b: together(views, b)))

    backend = "PostgreSQL" if services.settings.is_postgres else "SQLite"
    stages.print(f"{backend}: writer-thread CPU per create, batches of {n}, best of {args.rounds} (µs)")


def together(views: list[Any], batch: list[tuple[int, Any]]) -> None:
    """The views' share of the writer's on_saved hook (projections.runner.apply_together):
    every view in one transaction. Every view is at the position before the batch."""
    with views[0].store.together():
        for view in views:
            view.apply_batch(batch, Tracking(view.name, batch[-1][0]), after=batch[0][0] - 1)


if __name__ == "__main__":
    main()
