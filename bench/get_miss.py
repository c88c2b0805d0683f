"""CPU of a task-cache MISS on GET /agents/tasks/{id}, stage by stage (issue #7).

    .venv/bin/python -m bench.get_miss                   # SQLite in a fresh temporary folder
    .venv/bin/python -m bench.get_miss --profile         # cProfile of the whole miss path, top 30

Seeds --tasks tasks with the seed's create body (with an agent: one event a task), then
does what adapters/http/task_read.py does for an uncached task, stage by stage, in this
thread: the indexed read of the task's events (``reads.task_events``), the replay
(``reads.replay``), the view (``presenters.task_view``) and its JSON (msgspec), for every
seeded task in a shuffled order (so the page cache is warm but the task cache is not
involved). Figures are thread CPU time per miss (µs), the best of --rounds.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from typing import Any

import msgspec

from adapters.config import Settings
from adapters.http import presenters as p
from app import build_services
from bench.stages import Stages, profile
from domain import commands as c
from domain.task import Actor, Task

BODY = (b'{"task":"Analyze Q4 revenue trends and create executive report","agentId":"amy",'
        b'"context":{"dataSource":"revenue_q4_2024.csv","focusAreas":["growth","churn","expansion"],'
        b'"targetAudience":"C-suite executives"},"priority":"high","deadline":"2024-10-30T17:00:00Z",'
        b'"deliverables":["pdf-report","presentation","data-analysis"]}')
BASE = "http://127.0.0.1:8000/"


def done(coroutine: Any) -> Any:
    """The result of a coroutine that never awaits anything (SQLite's inline reads)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the read awaited: run this bench on SQLite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7, help="passes over every task; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the miss path instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="get-miss-") as folder:
        services = build_services(Settings(database=f"sqlite:///{folder}/tasks.db", bootstrap_key="k" * 32))
        try:
            run(services, args)
        finally:
            services.close()


def run(services: Any, args: argparse.Namespace) -> None:
    app, reads = services.app, services.reads
    command = msgspec.json.decode(BODY, type=c.CreateTask)
    by = Actor("bench", "req-1")
    ids = []
    for start in range(0, args.tasks, 500):
        tasks = [Task.create(command, by) for _ in range(min(500, args.tasks - start))]
        app.save(*tasks)
        ids.extend(task.id for task in tasks)
    encoder = msgspec.json.Encoder()
    n = len(ids)

    def miss(task_id: Any) -> bytes:
        events = done(reads.task_events(task_id, 0))
        task = reads.replay(task_id, events)
        return encoder.encode(p.task_view(task, BASE))

    if args.profile:
        profile(args.rounds, lambda _: [miss(task_id) for task_id in ids])
        return

    stages = Stages(n)
    timed = stages.timed
    for _ in range(args.rounds):
        random.shuffle(ids)
        rows = timed("query (task_events)", lambda: [done(reads.task_events(i, 0)) for i in ids])
        tasks = timed("replay", lambda: [reads.replay(i, r) for i, r in zip(ids, rows, strict=True)])
        views = timed("present (task_view)", lambda: [p.task_view(t, BASE) for t in tasks])
        timed("encode (msgspec)", lambda: [encoder.encode(v) for v in views])
        random.shuffle(ids)
        timed("whole miss", lambda: [miss(i) for i in ids])

    stages.print(f"SQLite: CPU per cache miss over {n} tasks of one event, best of {args.rounds} (µs)", 22)


if __name__ == "__main__":
    main()
