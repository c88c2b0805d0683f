"""Which ASGI server for `tasks serve`: uvicorn against granian, on the bare app and on the service.

    .venv/bin/pip install granian   # only this comparison needs it; it is not a project dependency
    .venv/bin/python bench/servers.py [--rounds 3] [--duration 10] [--tasks 20000] [--json out.json]

It seeds one SQLite database (``http_bench.seed``), lets the service build its views
once, and then, for each round, runs every server in turn (the order alternates from
round to round, so that neither always gets the quieter minute):

- the bare app (``bench/bare.py``): bare GET and bare POST;
- the service on a fresh copy of the seeded database: get, list (two filters), create;
- the service in the layout the README recommends for production, on another fresh copy:
  ``TASKS_PROJECTIONS=off`` beside a ``tasks project`` worker that keeps the views, driven with
  create ("create, views in a worker"). The two layouts can rank the servers differently: in
  the fourteenth session's runs granian did the inline create a little faster and the worker
  layout's create slower (README, "What bounds the create").

Both servers run one worker with uvloop, log level warning and no access log:
uvicorn as ``tasks serve`` starts it (``uvicorn.run``, http "auto" = httptools), granian
as ``granian --interface asgi --factory --no-ws`` (loop "auto" = uvloop). wrk drives each
with the same script, 64 connections, 2 threads, after a 1 s warm-up.

Besides wrk's requests/s and latencies it prints the server's CPU time per request
(user + system of the server process and its children over the measured run, divided
by the requests wrk saw finish). On a shared machine throughput follows whatever else
runs; CPU per request moves much less, so it is the figure to compare servers by.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import http_bench as hb  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SERVERS = ("uvicorn", "granian")
BARE = (("bare GET", "/", "get.lua"), ("bare POST", "/agents/tasks", "create.lua"))
SERVICE = (("get", "/", "get.lua"), ("list", "/", "list.lua"), ("create", "/agents/tasks", "create.lua"))
WORKER = ((hb.WORKER_CREATE, "/agents/tasks", "create.lua"),)


def command(server: str, which: str, port: int) -> list[str]:
    if server == "uvicorn":
        if which == "bare":
            return [sys.executable, str(hb.BENCH / "bare.py"), "--host", hb.HOST, "--port", str(port),
                    "--log-level", "warning"]
        return [str(VENV_BIN / "tasks"), "serve", "--host", hb.HOST, "--port", str(port), "--log-level", "warning"]
    target = "bench.bare:create_app" if which == "bare" else "app:create_app"
    return [str(VENV_BIN / "granian"), "--interface", "asgi", "--factory", "--no-ws", "--host", hb.HOST,
            "--port", str(port), "--log-level", "warning", target]


def start(server: str, which: str, workdir: Path, golden: Path, key: str, tag: str,
          stack: contextlib.ExitStack) -> hb.Server:
    """The bare app, the service, or (``worker``) the service with its views in a `tasks project`
    worker beside it; ``stack`` stops whatever this starts."""
    env: dict[str, str] = {}
    if which != "bare":
        copy = workdir / f"db-{tag}"
        shutil.copytree(golden, copy)
        env = {"TASKS_DATABASE": f"sqlite:///{copy}/tasks.db", "TASKS_BOOTSTRAP_KEY": key}
    if which == "worker":
        env["TASKS_PROJECTIONS"] = "off"
        worker = hb.Worker(workdir, "sqlite", env["TASKS_DATABASE"])
        worker.spawn()
        stack.callback(worker.stop)
    port = hb.free_port()
    process = hb.Server(f"{server} {which}", command(server, which, port), hb.server_env(env), port,
                        workdir / f"{tag}.log")
    stack.callback(process.stop)
    return process.start("/agents/tasks/ready" if which == "bare" else "/healthz", timeout=120)


def measure(server: hb.Server, path: str, script: str, env: dict[str, str], opts: hb.Options) -> dict[str, Any]:
    """One warm-up, then a measured wrk run with the server's CPU time around it (http_bench's)."""
    load = hb.loadavg()
    result = hb.measure(server, path, script, env, opts)
    return {"rps": result.requests_per_second, "p50": result.p50_ms, "p99": result.p99_ms,
            "cpu_us": result.cpu.server_us if result.cpu is not None else 0.0, "load": load,
            "rss_mb": round(server.rss_mb(), 1), "failed": hb.problems(result, opts.connections)}


def prepare(workdir: Path, tasks: int, key: str) -> tuple[Path, Path]:
    """The seeded database with its views built, and the file of ids for the get script."""
    golden, ids = workdir / "golden", workdir / "ids.txt"
    golden.mkdir()
    hb.seed(f"sqlite:///{golden}/tasks.db", tasks, key, ids)
    port = hb.free_port()
    env = hb.server_env({"TASKS_DATABASE": f"sqlite:///{golden}/tasks.db", "TASKS_BOOTSTRAP_KEY": key})
    builder = hb.Server("catch-up", command("uvicorn", "service", port), env, port, workdir / "catch-up.log")
    builder.start("/healthz", timeout=120 + tasks / 500)
    builder.stop()
    return golden, ids


def summary(rows: list[dict[str, Any]]) -> str:
    """Medians over the rounds, per server and scenario, and service/bare under the same server."""
    head = ("scenario", "server", "requests/s", "p99", "CPU/request", "service/bare", "runs (requests/s)")
    lines = []
    medians: dict[tuple[str, str], float] = {}
    for scenario, *_ in (*BARE, *SERVICE, *WORKER):
        for server in SERVERS:
            runs = [r for r in rows if r["server"] == server and r["scenario"] == scenario]
            if not runs:
                continue
            rps = statistics.median(r["rps"] for r in runs)
            medians[(server, scenario)] = rps
            base = medians.get((server, "bare POST" if "create" in scenario else "bare GET"))
            ratio = f"{rps / base:.1%}" if base and not scenario.startswith("bare") else "—"
            lines.append((scenario, server, f"{rps:,.0f}", f"{statistics.median(r['p99'] for r in runs):.1f} ms",
                          f"{statistics.median(r['cpu_us'] for r in runs):,.0f} µs", ratio,
                          ", ".join(f"{r['rps']:,.0f}" for r in runs)))
    widths = [max(len(head[i]), *(len(line[i]) for line in lines)) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks seeded before the reads")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or not (VENV_BIN / "granian").exists():
        print("needs wrk (apt-get install -y wrk) and granian (.venv/bin/pip install granian)", file=sys.stderr)
        return 2
    opts = hb.Options(args.duration, 64, 2, 1, 10)
    key = "bench-" + "k" * 32
    rows: list[dict[str, Any]] = []
    signal.signal(signal.SIGTERM, hb._on_sigterm)  # a KeyboardInterrupt: the finally blocks stop every server
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="tasks-servers-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        golden, ids = prepare(workdir, args.tasks, key)
        env = {"BENCH_KEY": key, "BENCH_IDS": str(ids)}
        print(f"{hb.machine()}, granian {version('granian')}")
        for n in range(args.rounds):
            for server in SERVERS if n % 2 == 0 else SERVERS[::-1]:
                for which, scenarios in (("bare", BARE), ("service", SERVICE), ("worker", WORKER)):
                    with contextlib.ExitStack() as running:
                        process = start(server, which, workdir, golden, key, f"{server}-{which}-{n}", running)
                        for scenario, path, script in scenarios:
                            row = {"round": n, "server": server, "scenario": scenario,
                                   **measure(process, path, script, env, opts)}
                            rows.append(row)
                            print(f"round {n} {server:<8} {scenario:<9} {row['rps']:>9,.0f} req/s  "
                                  f"p99 {row['p99']:7.1f} ms  {row['cpu_us']:6,.0f} µs CPU/request  "
                                  f"load {row['load']}{'  FAILED: ' + '; '.join(row['failed']) if row['failed'] else ''}",
                                  flush=True)
    print(f"\ncommand: .venv/bin/python bench/servers.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
