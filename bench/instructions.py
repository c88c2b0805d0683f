"""Instructions per request of the ASGI app, counted by valgrind: an A/B measure that does
not move with the machine (issue #7).

    apt-get install -y valgrind                   # once: valgrind is a Debian package
    .venv/bin/python -m bench.instructions        # every scenario, about 6 minutes
    .venv/bin/python -m bench.instructions --scenarios get-cached,create

On this virtual machine wrk's requests/s (and the server's CPU time per request) move by
±20% from one minute to the next, idle or not, so a change worth 5% cannot be told apart
from the noise in a few runs. The number of instructions a request executes does not
move: two runs of the same code agree to about 0.02%.

Each scenario drives the real app (``app.create_app``, SQLite, the group-commit writer,
the task cache; the bare app of ``bench/bare.py`` for the bare rows) in this process, with
no server: the ASGI messages are handed to it directly, 32 requests at a time. It runs
twice under ``valgrind --tool=callgrind``, with --requests and twice as many after the
same start-up and warm-up, and the difference of the two totals, divided by --requests, is
the figure: start-up, seeding and warm-up cancel out. Every thread counts (the writer's
work for a create too). What it leaves out is the server's share (uvicorn, httptools, the
socket system calls), the same for both apps, and everything that costs time without
costing instructions: cache misses, lock hand-overs, waiting for fsync.

Scenarios:

- ``get-cached``: GET of 500 tasks, read once during the warm-up, so each is in the task cache.
- ``get-uncached``: GET cycling over 5,000 tasks with a 1 MB task cache, so each misses.
- ``create``: POST of the wrk script's create body (an agent: one event a task).
- ``bare-get``, ``bare-post``: the bare endpoints, for the ratio.

A cached answer is confirmed again after at most 5 s (adapters/changes.py ``MAX_TRUST``);
under valgrind, ~50 times slower, that would happen ~50 times as often as in a real run,
so the driver lifts the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.get_miss import BODY

KEY = "bench-instructions-key-0123456789abcdef"
SCENARIOS = ("bare-get", "bare-post", "get-cached", "get-uncached", "create")
BARE_OF = {"get-cached": "bare-get", "get-uncached": "bare-get", "create": "bare-post"}
CONCURRENCY = 32
WARMUP = 1000
CACHED_IDS = 500
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer " + KEY.encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "scheme": "http",
            "method": method, "root_path": "", "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": headers}


async def drive(scenario: str, database: str, ids: list[str], requests: int) -> None:
    """Warm up, then answer ``requests`` requests; exit 1 on any answer but the expected one."""
    state: dict[str, Any] = {}
    running: asyncio.Future[Any] | None = None  # the app's lifespan (the loop holds tasks only weakly)
    if scenario.startswith("bare"):
        from bench import bare
        app: Any = bare.create_app()
    else:
        os.environ.update(TASKS_DATABASE=database, TASKS_BOOTSTRAP_KEY=KEY, TASKS_PROJECTIONS="off")
        if scenario == "get-uncached":
            os.environ["TASKS_TASK_CACHE_MB"] = "1"
        import adapters.hot_reads
        from adapters.http import task_read
        from app import create_app
        adapters.hot_reads.MAX_TRUST = task_read.MAX_TRUST = float("inf")  # see the module's docstring
        app = create_app()
        sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await sent.put({"type": "lifespan.startup"})
        lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
        running = asyncio.ensure_future(app(lifespan, sent.get, answers.put))
        started = await answers.get()
        if started["type"] != "lifespan.startup.complete":
            raise SystemExit(f"the app did not start: {started}")
    if scenario == "get-cached":
        ids = ids[:CACHED_IDS]
    post = scenario in ("create", "bare-post")
    expected = 201 if post else 200
    statuses: dict[int, int] = {}

    async def one(i: int) -> None:
        if post:
            request = scope("POST", "/agents/tasks", BODY)
        else:
            request = scope("GET", "/agents/tasks/" + ids[i % len(ids)], b"")
        request["state"] = dict(state)
        body = BODY if post else b""
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect while the app answers
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(request, receive, send)

    async def run(first: int, count: int) -> None:
        for start in range(first, first + count, CONCURRENCY):
            await asyncio.gather(*(one(i) for i in range(start, min(first + count, start + CONCURRENCY))))

    await run(0, WARMUP)
    await run(WARMUP, requests)
    if set(statuses) != {expected}:
        raise SystemExit(f"{scenario}: expected only {expected}, got {statuses}")
    if running is not None and running.done():
        raise SystemExit(f"{scenario}: the app's lifespan ended during the run")
    os._exit(0)  # no shutdown: its work is not the requests', and differs between the runs


def count(scenario: str, database: Path, ids_file: Path, requests: int, folder: Path) -> int:
    """Instructions of one driver run under callgrind, on a fresh copy of the seeded database."""
    run = folder / f"run-{scenario}-{requests}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copy(database, run / "tasks.db")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={run / 'callgrind.out'}",
               sys.executable, "-m", "bench.instructions", "--drive", scenario, "--requests", str(requests),
               "--database", f"sqlite:///{run / 'tasks.db'}", "--ids", str(ids_file)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800,
                          cwd=Path(__file__).resolve().parent.parent)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{scenario} ({requests} requests) failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated, from: " + ", ".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests of the shorter run (the longer has twice)")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks seeded for the GETs")
    parser.add_argument("--drive", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        ids = Path(args.ids).read_text().split()
        asyncio.run(drive(args.drive, args.database, ids, args.requests))
        return 0
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in scenarios if name not in SCENARIOS]
    if unknown or not scenarios or args.requests < 1 or args.tasks < 1:
        parser.error(f"scenarios must come from {', '.join(SCENARIOS)}; --requests and --tasks at least 1")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install -y valgrind", file=sys.stderr)
        return 1
    from bench.http_bench import seed
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as name:
        folder = Path(name)
        database, ids_file = folder / "seeded.db", folder / "ids.txt"
        seed(f"sqlite:///{database}", args.tasks, KEY, ids_file)
        figures: dict[str, float] = {}
        for scenario in scenarios:
            short = count(scenario, database, ids_file, args.requests, folder)
            long = count(scenario, database, ids_file, 2 * args.requests, folder)
            figures[scenario] = (long - short) / args.requests
            print(f"  {scenario}: {figures[scenario]:,.0f}", file=sys.stderr, flush=True)
    print(f"{'scenario':<14} {'instructions/request':>21} {'x bare':>7}")
    for scenario, figure in figures.items():
        bare = figures.get(BARE_OF.get(scenario, ""))
        print(f"{scenario:<14} {figure:>21,.0f} {f'{figure / bare:.2f}' if bare else '':>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
