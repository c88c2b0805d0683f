"""How long the audit reads take on a log of a given size (SQLite; prints figures, asserts nothing).

    .venv/bin/python bench/audit_bench.py [--tasks 2000] [--events-per-task 8]

Writes the history through the application (no HTTP), then times: `tasks audit
verify` over the database, a checkpoint, one page of one tenant's feed through
the event index while 9 other tenants' events sit in between, and a full NDJSON
export of that tenant.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.testclient import TestClient

from adapters import audit_log
from adapters.config import Settings
from app import build_services, create_app
from domain import audit
from domain import commands as c
from domain.ids import public_id
from domain.task import Actor


def timed(label: str, action, count: int | None = None):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = action()
    spent = time.perf_counter() - start
    rate = f", {count / spent:,.0f} events/s" if count else ""
    print(f"{label:<48} {spent * 1000:9.1f} ms{rate}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--events-per-task", type=int, default=8)
    args = parser.parse_args()
    tasks, per_task = min(args.tasks, 20_000), min(max(args.events_per_task, 2), 50)
    folder = tempfile.mkdtemp(prefix="audit-bench-")
    settings = Settings(database=f"sqlite:///{folder}/tasks.db", bootstrap_key="bench-key")
    services = build_services(settings)
    try:
        for runner in services.projections:  # write first, then let the views catch up (no SQLite lock fights)
            runner.stop()
        start = time.perf_counter()
        for n in range(tasks):
            by = Actor("key_bench", f"req_{n}", tenant=f"tenant{n % 10}")
            task_id = public_id(services.app.create_task(c.CreateTask(task=f"t{n}", agent_id="amy"), by).task.id)
            services.app.execute(task_id, by, lambda t, by=by: t.start(c.StartTask(), by))
            for i in range(per_task - 3):
                services.app.execute(task_id, by, lambda t, i=i, by=by: t.report_progress(
                    c.ReportProgress(progress=i), by))
        head = services.app.recorder.max_notification_id() or 0
        print(f"wrote {head:,} events of {tasks:,} tasks (10 tenants) in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        for runner in services.projections:
            runner.catch_up()
        print(f"views (task list, event index) caught up in {time.perf_counter() - start:.1f} s")
        entries = timed("read the whole log (decode every event)", lambda: audit_log.database_entries(services.app),
                        head)
        report = timed("verify every chain", lambda: audit.verify(entries), head)
        assert report.ok
        timed("checkpoint of the whole log", lambda: audit.make_checkpoint(entries, head), head)
    finally:
        services.close()
    with TestClient(create_app(settings), headers={"Authorization": "Bearer bench-key"}) as client:
        # the bootstrap key is tenant "default": read tenant3's feed with a tenant3 auditor key
        client.app_state["services"].keys.add("bench-auditor", tenant="tenant3", role="auditor")
        headers = {"Authorization": "Bearer bench-auditor"}
        page = timed("GET /events?limit=100 (one tenant of 10)",
                     lambda: client.get("/events", params={"after": head // 2, "limit": 100}, headers=headers))
        assert page.status_code == 200 and len(page.json()["data"]["events"]) == 100
        export = timed("GET /events as NDJSON (the whole tenant)",
                       lambda: client.get("/events", headers={**headers, "Accept": "application/x-ndjson"}),
                       head // 10)
        print(f"  exported {len(export.text.splitlines()):,} lines, {len(export.content) / 1e6:.1f} MB")
        timed("GET /audit/checkpoint (tenant, reads the log)",
              lambda: client.get("/audit/checkpoint", headers=headers), head)


if __name__ == "__main__":
    main()
