"""CPU per create of each thread of a real server under wrk (issue #7).

    .venv/bin/python -m bench.create_threads                  # SQLite, fresh folder, 10 s
    .venv/bin/python -m bench.create_threads --backend postgres --duration 10

Starts `tasks serve` (the same way bench.http_bench does), warms it up with a
short create run, then drives POST /agents/tasks with wrk (bench/wrk/create.lua,
64 connections) and reads every thread's user+system CPU from
/proc/PID/task/*/stat before and after. Prints requests/s and, per thread name
(the event loop is the main thread; under creates the busiest other thread is the writer), the CPU
microseconds per create. CPU per request varies far less than requests/s on a
shared machine; compare figures taken in the same minute.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import re
import urllib.request

from bench.http_bench import Options, durable_pg_cluster, run_wrk, start_service

KEY = "bench-key-" + "x" * 32


def thread_ticks(pid: int) -> dict[str, int]:
    """utime+stime ticks by thread (Python does not name its OS threads: the main thread,
    which runs the event loop, is the one whose id is the process's)."""
    found: dict[str, int] = defaultdict(int)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = "main (event loop)" if task.name == str(pid) else f"thread {task.name}"
            found[name] += int(fields[11]) + int(fields[12])
    return found


def batches(base: str) -> int:
    """Group commits the server has made so far (its /metrics gauge)."""
    request = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^tasks_command_batches (\S+)", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    opts = Options(connections=args.connections, threads=2, duration=args.duration, warmup=args.warmup,
                   timeout=10)
    with tempfile.TemporaryDirectory(prefix="create-threads-") as folder, contextlib.ExitStack() as stack:
        workdir = Path(folder)
        if args.backend == "postgres":
            cluster = durable_pg_cluster()
            stack.callback(cluster.stop)
            cluster.start()
            database = cluster.new_database()
        else:
            database = f"sqlite:///{workdir}/tasks.db"
        server = start_service(workdir, args.backend, database, KEY, 0)
        stack.callback(server.stop)
        assert server.process is not None
        pid = server.process.pid
        env = {"BENCH_KEY": KEY}
        url = server.base + "/agents/tasks"
        run_wrk(url, "create.lua", env, args.warmup, opts)
        server.settle()
        commits = batches(server.base)
        before = thread_ticks(pid)
        result = run_wrk(url, "create.lua", env, args.duration, opts)
        after = thread_ticks(pid)
        commits = batches(server.base) - commits
        requests = result.requests
        tick = 1e6 / os.sysconf("SC_CLK_TCK")
        print(f"{args.backend}: {result.requests_per_second:,.0f} creates/s, p50 {result.p50_ms:.1f} ms, "
              f"p99 {result.p99_ms:.1f} ms, {requests:,} requests, non-2xx {result.non_2xx}, socket errors {result.error_count}, "
              f"{requests / max(commits, 1):.1f} creates per commit")
        total = 0.0
        for name in sorted(after, key=lambda n: after[n] - before.get(n, 0), reverse=True):
            spent = (after[name] - before.get(name, 0)) * tick / max(requests, 1)
            total += spent
            if spent >= 1:
                print(f"  {name:24s} {spent:7.0f} µs CPU per create")
        print(f"  {'all threads':24s} {total:7.0f} µs CPU per create")


if __name__ == "__main__":
    main()
