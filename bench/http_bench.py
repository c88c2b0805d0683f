"""HTTP benchmark: the service against a bare Starlette app, driven by wrk, in one run.

    .venv/bin/python bench/http_bench.py [--backend sqlite|postgres|both] [--duration 10]
        [--connections 64] [--threads 2] [--tasks 100000] [--warmup 1] [--rounds 1]
        [--json results.json]

For each backend it:

1. seeds ``--tasks`` tasks straight through ``TaskApplication`` (``Task.create`` +
   ``save`` of 1 000 tasks per commit, before the server starts: the same events the
   HTTP create writes, without HTTP, so that ``--tasks 1000000`` takes minutes, not
   hours). Half are created with an agent (``assigned``), half without
   (``pending``); priorities rotate over low/medium/high/urgent;
2. starts the service (``tasks serve``, which catches every view up before it listens:
   the list, metrics and event index, with the list view's counts) on a fresh database: a
   temporary SQLite file (``synchronous = FULL``, as the service sets it), or a database in a
   throwaway PostgreSQL cluster (``tests/pg_cluster.py``) with PostgreSQL's durable defaults
   (``fsync``, ``synchronous_commit``, ``full_page_writes`` on; the test suite's cluster has
   them off), removed at the end;
3. drives, with the same wrk settings, the service: get (a random seeded id), list
   (``?status=…&priority=…``, a random pair), stats (``/agents/tasks/stats``, "n/a" while
   the service answers 404) and create (the seed's body). Each run of the service comes
   right after a run of the bare app (``bench/bare.py``: JSON GET and msgspec-validated
   POST, no storage) it is compared with, so that both are of the same minute; ``--rounds``
   repeats the pair, and the table shows the round with the median ratio;
4. unless ``--no-worker``: stops the service and starts the layout the README recommends for
   production, ``tasks serve`` with ``TASKS_PROJECTIONS=off`` and a ``tasks project`` worker
   process keeping the views, drives create again ("create, views in a worker") and reports
   how far behind the views were when wrk stopped and how long the worker took to catch up;
5. prints requests/s, p50, p99, the ratio to the bare endpoint (create vs bare POST,
   the reads vs bare GET), every round's ratio and p99 (and, for get, how many of its GETs
   the task cache served), wrk's non-2xx and socket-error counts, how long seeding and the
   startup (views' catch-up) took, and the service's RSS: VmRSS after startup (all views
   caught up with the seeded tasks) and after the wrk runs, and VmHWM, the peak of the whole
   life of the process, catch-up included;
6. prints, for every round, where the CPU went during each measured run, per request: the
   bare server's, the service's and, of that, its event loop's (the main thread), the
   worker's and PostgreSQL's (the server and its backends) where they run, and how many of
   the machine's cores stayed idle (``CpuUse``; in the JSON too). A service near one core of
   CPU beside idle cores is held by its interpreter lock, not by the machine.

Both servers run with the same settings: ``uvicorn.run`` with its defaults (one worker,
loop and http "auto", i.e. uvloop and httptools) and log level warning, which is what
``tasks serve`` does. All traffic goes to 127.0.0.1. Every step is bounded in time, and
every process this script starts is stopped at the end, also on Ctrl-C or an error.

wrk is a Debian package: ``apt-get update && apt-get install -y wrk``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WRK_DIR = BENCH / "wrk"
HOST = "127.0.0.1"
SEED_BATCH = 1_000
IDS_FOR_GET = 100_000  # at most this many seeded ids are handed to the get script
GET_LIST_TARGETS = {"get": 0.50, "list": 0.30}
CREATE_TARGETS = {"sqlite": 0.50, "postgres": 0.30}
P99_TARGET_MS = 25.0
WORKER_CREATE = "create, views in a worker"


# --- wrk's output ------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    disk_bytes: int | None = None  # what the machine wrote to its disks during the run (measure())
    cpu: CpuUse | None = None  # where the machine's CPU went during the run (measure())

    @property
    def error_count(self) -> int:
        return sum(self.socket_errors.values())


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _duration_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _TIME_UNITS_MS[found.group(2)]


def parse_wrk(text: str) -> WrkResult:
    """The figures of one ``wrk --latency`` run, from its printed report."""

    def need(pattern: str) -> re.Match[str]:
        found = re.search(pattern, text, re.MULTILINE)
        if found is None:
            raise ValueError(f"wrk output has no match for {pattern!r}:\n{text}")
        return found

    total = need(r"^\s*(\d+) requests in ([\d.]+\w+),")
    rps = need(r"^Requests/sec:\s+([\d.]+)")
    p50 = need(r"^\s*50(?:\.000)?%\s+(\S+)")
    p99 = need(r"^\s*99(?:\.000)?%\s+(\S+)")
    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s+(\d+)", text, re.MULTILINE)
    errors = re.search(
        r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text, re.MULTILINE
    )
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_duration_ms(total.group(2)) / 1000.0,
        requests_per_second=float(rps.group(1)),
        p50_ms=_duration_ms(p50.group(1)),
        p99_ms=_duration_ms(p99.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=(
            dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()))) if errors else {}
        ),
    )


# --- processes ----------------------------------------------------------------------


def _load_pg_cluster() -> Any:
    spec = importlib.util.spec_from_file_location("pg_cluster", ROOT / "tests" / "pg_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    return int(_load_pg_cluster().free_port())


def durable_pg_cluster() -> Any:
    """A throwaway PostgreSQL cluster (not started yet) with PostgreSQL's durable defaults
    (``fsync``, ``synchronous_commit`` and ``full_page_writes`` on), as a deployment has them:
    the test suite's cluster turns them off, and a create measured on it would be answered
    before its events were on disk."""
    return _load_pg_cluster().PgCluster(durable=True)


def rss_kb(pid: int) -> int:
    """VmRSS of a process and all its descendants (workers), in kB."""
    return _status_kb(pid, "VmRSS")


def peak_rss_kb(pid: int) -> int:
    """VmHWM (the peak resident set so far) of a process and its descendants, in kB."""
    return _status_kb(pid, "VmHWM")


def _status_kb(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status, summed over the process and its descendants."""
    total = 0
    for current in _descendants(pid):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{current}/status").read_text()
            found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
            total += int(found.group(1)) if found else 0
    return total


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


@dataclass
class CpuUse:
    """Where the CPU went during a measured run, per request wrk saw finish: the server (its
    process and children), the server's main thread (uvicorn's event loop), the processes
    measured with it (the `tasks project` worker, PostgreSQL's server and its backends), and
    the cores the machine left idle on average (-1 where Linux does not say). Which of them is
    the bound shows here: a server whose threads add up to about one core beside idle cores is
    held by its interpreter lock, not by the machine."""

    server_us: float
    loop_us: float
    idle_cores: float
    others_us: dict[str, float] = field(default_factory=dict)


def _cpu_ticks(stat_path: str) -> int:
    """utime + stime of a /proc ``stat`` file (a process's or a thread's), in clock ticks."""
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def thread_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process's main thread (uvicorn's event loop)."""
    return _cpu_ticks(f"/proc/{pid}/task/{pid}/stat") / os.sysconf("SC_CLK_TCK")


def idle_cpu_seconds(stat: str | None = None) -> float | None:
    """Seconds all the machine's cores have spent idle (idle and iowait of /proc/stat's ``cpu``
    line) so far; None where Linux does not say."""
    try:
        text = stat if stat is not None else Path("/proc/stat").read_text()
    except OSError:
        return None
    found = re.search(r"^cpu\s+(\d+) (\d+) (\d+) (\d+) (\d+)", text, re.MULTILINE)
    if found is None:
        return None
    return (int(found.group(4)) + int(found.group(5))) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants."""
    ticks = 0
    for current in _descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            ticks += _cpu_ticks(f"/proc/{current}/stat")
    return ticks / os.sysconf("SC_CLK_TCK")


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, key: str | None = None, timeout: float = 5.0) -> int:
    """One request to 127.0.0.1; the status code (never a proxy)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


VIRTUAL_DISKS = ("loop", "ram", "zram", "dm-", "md", "sr", "nbd")  # views of other disks, or no disk


def disk_written_bytes(diskstats: str | None = None, disks: list[str] | None = None) -> int | None:
    """Bytes written to the machine's disks so far: /proc/diskstats, whole disks only (those in
    /sys/block that are not loop, RAM, mapper or RAID devices, which would count a write twice or
    not at all); None where Linux does not say."""
    try:
        text = diskstats if diskstats is not None else Path("/proc/diskstats").read_text()
        names = disks if disks is not None else os.listdir("/sys/block")
    except OSError:
        return None
    whole = {name for name in names if not name.startswith(VIRTUAL_DISKS)}
    fields = [line.split() for line in text.splitlines()]
    return sum(int(f[9]) * 512 for f in fields if len(f) > 9 and f[2] in whole)  # sectors of 512 bytes


def cache_counts(base: str) -> tuple[int, int] | None:
    """The service's task-cache hits and misses so far (GET /metrics), or None if it does not say."""
    with contextlib.suppress(OSError, ValueError):
        with _NO_PROXY.open(urllib.request.Request(base + "/metrics"), timeout=10.0) as response:
            text = response.read().decode()
        found = {name: int(float(value)) for name, value in
                 re.findall(r"^tasks_task_cache_(hits|misses) ([0-9.e+]+)$", text, re.MULTILINE)}
        return found["hits"], found["misses"]
    return None


class Server:
    """A server process in its own session, with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def spawn(self) -> None:
        """Start the process in its own session (so that stop() ends it and its children)."""
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def start(self, ready_path: str, timeout: float) -> Server:
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if http_status(self.base + ready_path, timeout=2.0) < 500:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def rss_mb(self) -> float:
        assert self.process is not None
        return rss_kb(self.process.pid) / 1024.0

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return peak_rss_kb(self.process.pid) / 1024.0

    def settle(self, limit: float = 60.0) -> float:
        """Wait until the server is idle (under 5% of a core over 0.5 s), at most ``limit``
        seconds, so that requests still queued from the previous run (their clients are
        gone, but a thread pool finishes them) do not slow the next. Returns seconds waited."""
        assert self.process is not None
        started = time.monotonic()
        before = cpu_seconds(self.process.pid)
        while time.monotonic() - started < limit:
            time.sleep(0.5)
            after = cpu_seconds(self.process.pid)
            if after - before < 0.025:
                break
            before = after
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKS_")}
    return {**env, **extra}


def start_bare(workdir: Path) -> Server:
    port = free_port()
    command = [sys.executable, str(BENCH / "bare.py"), "--host", HOST, "--port", str(port),
               "--log-level", "warning"]
    return Server("bare", command, server_env({}), port, workdir / "bare.log").start(
        "/agents/tasks/ready", timeout=60)


def start_service(workdir: Path, backend: str, database: str, key: str, tasks: int,
                  extra: dict[str, str] | None = None, tag: str = "") -> Server:
    port = free_port()
    tasks_command = str(Path(sys.executable).parent / "tasks")
    command = [tasks_command, "serve", "--host", HOST, "--port", str(port), "--log-level", "warning"]
    env = server_env({"TASKS_DATABASE": database, "TASKS_BOOTSTRAP_KEY": key, **(extra or {})})
    # It catches its list projection up (every seeded event) before it listens.
    return Server(f"service ({backend}{tag})", command, env, port,
                  workdir / f"service-{backend}{tag}.log").start("/healthz", timeout=120 + tasks / 500)


class Worker(Server):
    """`tasks project`: the views kept in a process of their own. Start it with spawn(): it has no
    HTTP to wait for."""

    def __init__(self, workdir: Path, backend: str, database: str) -> None:
        command = [str(Path(sys.executable).parent / "tasks"), "project"]
        super().__init__(f"worker ({backend})", command, server_env({"TASKS_DATABASE": database}), 0,
                         workdir / f"worker-{backend}.log")



def views_lag(service: Server, key: str) -> int:
    """The largest lag of the service's views behind the log (GET /projections), in events."""
    request = urllib.request.Request(service.base + "/projections", headers={"Authorization": f"Bearer {key}"})
    with _NO_PROXY.open(request, timeout=10.0) as response:
        views = json.loads(response.read())["data"]["projections"]
    return max((int(view["lag"]) for view in views), default=0)


# --- seeding -------------------------------------------------------------------------


def seed(database: str, count: int, key: str, ids_file: Path) -> float:
    """``count`` tasks through the application, in commits of SEED_BATCH; their ids
    (at most IDS_FOR_GET of them, spread evenly) go to ``ids_file``. Returns seconds."""
    from adapters.config import Settings
    from adapters.keys import hash_key
    from domain.application import TaskApplication
    from domain.commands import PRIORITIES, CreateTask
    from domain.ids import public_id
    from domain.task import Actor, Task

    started = time.monotonic()
    app = TaskApplication(env=Settings(database=database).eventsourcing_env())
    by = Actor(principal="key_" + hash_key(key)[:16], request_id="req_bench_seed", tenant="default")
    every = max(1, count // IDS_FOR_GET)
    ids: list[str] = []
    try:
        for start in range(0, count, SEED_BATCH):
            batch = []
            for i in range(start, min(count, start + SEED_BATCH)):
                command = CreateTask(
                    task=f"Benchmark task {i}: summarise the weekly revenue report",
                    agent_id=f"agent-{i % 50}" if (i // 4) % 2 else None,
                    priority=PRIORITIES[i % 4],  # type: ignore[arg-type]
                    context={"source": "bench", "n": i},
                    deliverables=["summary"],
                )
                task = Task.create(command, by)
                batch.append(task)
                if i % every == 0 and len(ids) < IDS_FOR_GET:
                    ids.append(public_id(task.id))
            app.save(*batch)
            done = start + len(batch)
            if count >= 100_000 and done % (count // 10) < len(batch):
                print(f"  seeded {done:,} / {count:,}", flush=True)
    finally:
        app.close()
    if not ids:
        raise SystemExit("--tasks must be at least 1: the get scenario needs a task to read")
    ids_file.write_text("\n".join(ids) + "\n")
    return time.monotonic() - started


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class Options:
    duration: int
    connections: int
    threads: int
    warmup: int
    timeout: int
    worker: bool = True
    rounds: int = 1


def run_wrk(url: str, script: str, env: dict[str, str], seconds: int, opts: Options) -> WrkResult:
    command = [
        "wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{seconds}s", f"--timeout={opts.timeout}s",
        "--latency", "-s", str(WRK_DIR / script), url,
    ]
    run_env = {**os.environ, **env, "BENCH_WRK_DIR": str(WRK_DIR)}
    done = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return parse_wrk(done.stdout)


def measure(server: Server, path: str, script: str, env: dict[str, str], opts: Options,
            others: dict[str, int] | None = None) -> WrkResult:
    """A warm-up run, then the measured one, with what the machine wrote to its disks during it
    and where its CPU went (``CpuUse``); each starts with the server idle."""
    waited = server.settle()
    if waited > 5:
        print(f"(waited {waited:.0f} s for {server.name} to go idle)", end=" ", flush=True)
    if opts.warmup > 0:
        run_wrk(server.base + path, script, env, opts.warmup, opts)
        server.settle()
    before = disk_written_bytes()
    cpu_before, started = _cpu_sample(server, others or {}), time.monotonic()
    result = run_wrk(server.base + path, script, env, opts.duration, opts)
    cpu_after, elapsed = _cpu_sample(server, others or {}), time.monotonic() - started
    after = disk_written_bytes()
    if before is not None and after is not None:
        result.disk_bytes = after - before  # the run's commits, checkpoints and views
    result.cpu = cpu_use(cpu_before, cpu_after, result.requests, elapsed)
    return result


CpuSample = tuple[float, float, dict[str, float], float | None]


def _cpu_sample(server: Server, others: dict[str, int]) -> CpuSample:
    """CPU seconds so far of the server, of its main thread and of each other process (and its
    descendants), and the machine's idle seconds."""
    assert server.process is not None
    pid = server.process.pid
    spent = {name: cpu_seconds(other) for name, other in others.items()}
    return cpu_seconds(pid), thread_cpu_seconds(pid), spent, idle_cpu_seconds()


def cpu_use(before: CpuSample, after: CpuSample, requests: int, elapsed: float) -> CpuUse | None:
    """Per request of a run, from two ``_cpu_sample``s ``elapsed`` seconds apart."""
    if requests <= 0 or elapsed <= 0:
        return None
    per = 1_000_000 / requests
    idle = -1.0 if before[3] is None or after[3] is None else (after[3] - before[3]) / elapsed
    return CpuUse(server_us=(after[0] - before[0]) * per, loop_us=(after[1] - before[1]) * per,
                  idle_cores=idle,
                  others_us={name: (after[2][name] - spent) * per for name, spent in before[2].items()})


def cpu_note(bare: WrkResult, service: WrkResult) -> str:
    """The progress line's CPU figures for one round."""
    if bare.cpu is None or service.cpu is None:
        return ""
    cpu = service.cpu
    others = "".join(f", {name} {spent:.0f} µs" for name, spent in cpu.others_us.items())
    idle = f", {cpu.idle_cores:.2f} of {os.cpu_count()} cores idle" if cpu.idle_cores >= 0 else ""
    return (f", CPU a request: bare {bare.cpu.server_us:.0f} µs, service {cpu.server_us:.0f} µs "
            f"(event loop {cpu.loop_us:.0f}){others}{idle}")


# --- the run -------------------------------------------------------------------------------


@dataclass
class Pair:
    """One round of a scenario: the bare endpoint's run, then the service's, back to back, so that
    the ratio compares two runs of the same minute (this machine drifts by ±20% over minutes)."""

    bare: WrkResult
    service: WrkResult
    cache_hits: float | None = None  # get: the share of its GETs (warm-up too) the task cache served

    @property
    def disk_per_request(self) -> float | None:
        """Bytes written to disk per finished request of the service's measured run."""
        if self.service.disk_bytes is None or not self.service.requests:
            return None
        return self.service.disk_bytes / self.service.requests

    @property
    def ratio(self) -> float:
        return self.service.requests_per_second / self.bare.requests_per_second


@dataclass
class Row:
    scenario: str
    backend: str
    pairs: list[Pair] = field(default_factory=list)  # one per round
    target: str = ""
    note: str = ""

    @property
    def shown(self) -> Pair | None:
        """The round with the median ratio (the lower of the two middle ones for an even count):
        a real run, each of its figures from the same wrk run."""
        if not self.pairs:
            return None
        return sorted(self.pairs, key=lambda pair: pair.ratio)[(len(self.pairs) - 1) // 2]

    @property
    def ratio(self) -> float | None:
        return self.shown.ratio if self.shown else None

    @property
    def median_p99_ms(self) -> float | None:
        return statistics.median(pair.service.p99_ms for pair in self.pairs) if self.pairs else None


def percent(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.1%}" if ratio >= 0.01 else f"{ratio:.2%}"


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def problems(result: WrkResult, connections: int) -> list[str]:
    """Why a run's figures cannot be taken at face value (empty when they can)."""
    found = []
    if result.non_2xx:
        found.append(f"{result.non_2xx} non-2xx responses")
    if result.error_count:
        detail = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items() if v)
        found.append(f"{result.error_count} socket errors ({detail})")
    if result.requests < connections:
        found.append(f"only {result.requests} requests completed with {connections} connections open: "
                     "the rest were still waiting when wrk stopped")
    return found


def ratio_target(scenario: str, backend: str) -> float | None:
    if scenario in ("create", WORKER_CREATE):
        return CREATE_TARGETS.get(backend)
    return GET_LIST_TARGETS.get(scenario)


def judge(row: Row, tasks: int, connections: int) -> None:
    """Fill in the target column: the issue's ratio and p99 targets, met or missed, by the median
    ratio and the median p99 over the rounds."""
    if not row.pairs or row.ratio is None or row.median_p99_ms is None:
        return
    failed = any(problems(run, connections) for pair in row.pairs for run in (pair.bare, pair.service))
    parts = ["FAILED REQUESTS (see below)"] if failed else []
    wanted = ratio_target(row.scenario, row.backend)
    if wanted is not None:
        parts.append(f"≥{wanted:.0%} {'ok' if row.ratio >= wanted else 'MISS'}")
    parts.append(f"p99≤{P99_TARGET_MS:.0f}ms {'ok' if row.median_p99_ms <= P99_TARGET_MS else 'MISS'}")
    if row.scenario == "list" and tasks < 1_000_000:
        parts.append("(target is at 1M)")
    row.target = ", ".join(parts)


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def run_backend(backend: str, workdir: Path, bare: Server, opts: Options, tasks: int,
                key: str) -> tuple[list[Row], dict[str, Any]]:
    """Seed, start the service, drive bare and service; everything it starts is stopped on the way out."""
    with contextlib.ExitStack() as stack:
        return _run_backend(backend, workdir, bare, stack, opts, tasks, key)


def _run_backend(backend: str, workdir: Path, bare: Server, stack: contextlib.ExitStack,
                 opts: Options, tasks: int, key: str) -> tuple[list[Row], dict[str, Any]]:
    print(f"\n== {backend} == (load average {loadavg()})", flush=True)
    if backend == "postgres":
        cluster = durable_pg_cluster()
        stack.callback(cluster.stop)
        print("  starting a throwaway PostgreSQL cluster (fsync and synchronous_commit on)", flush=True)
        cluster.start()
        database = cluster.new_database()
        # PostgreSQL's server and its backends (all the postmaster's children): their CPU per request
        postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    else:
        (workdir / "sqlite").mkdir(exist_ok=True)
        database = f"sqlite:///{workdir / 'sqlite' / 'tasks.db'}"
    ids_file = workdir / f"ids-{backend}.txt"
    seconds = seed(database, tasks, key, ids_file)
    print(f"  seeded {tasks:,} tasks through the application in {seconds:.1f} s", flush=True)
    started = time.monotonic()
    service = start_service(workdir, backend, database, key, tasks)
    stack.callback(service.stop)
    info: dict[str, Any] = {
        "seed_seconds": round(seconds, 1),
        "startup_seconds": round(time.monotonic() - started, 1),
        "rss_mb_after_start": round(service.rss_mb(), 1),
        "rss_mb_peak_after_start": round(service.peak_rss_mb(), 1),
    }
    print(f"  service up in {info['startup_seconds']} s (every view caught up with the {tasks:,} tasks "
          f"before it listens), RSS {info['rss_mb_after_start']} MB (peak {info['rss_mb_peak_after_start']} MB)",
          flush=True)

    env = {"BENCH_KEY": key, "BENCH_IDS": str(ids_file)}
    database_server = {"postgres": postmaster} if backend == "postgres" else {}
    rows: list[Row] = []

    def run(server: Server, path: str, script: str, others: dict[str, int] | None = None) -> WrkResult:
        result = measure(server, path, script, env, opts, others)
        if problems(result, opts.connections) and server.tail().strip():
            print(f"\n  !!! failed requests; the end of {server.name}'s log:", flush=True)
            print("\n".join("    " + line for line in server.tail(20).splitlines()), flush=True)
        return result

    def rounds(scenario: str, server: Server, path: str, script: str, after: Any = None,
               others: dict[str, int] | None = None) -> Row:
        """``opts.rounds`` pairs: the bare endpoint the scenario is compared with, then the service."""
        bare_path, bare_script = ("/agents/tasks", "create.lua") if "create" in scenario else ("/", "get.lua")
        row = Row(scenario, backend)
        for number in range(1, opts.rounds + 1):
            label = f"{scenario} ({number}/{opts.rounds})" if opts.rounds > 1 else scenario
            print(f"  {label:<32} {opts.duration} s bare, {opts.duration} s service …", end=" ", flush=True)
            bare_run = run(bare, bare_path, bare_script)
            before = cache_counts(server.base) if scenario == "get" else None
            pair = Pair(bare_run, run(server, path, script, {**database_server, **(others or {})}))
            counts = cache_counts(server.base) if before is not None else None
            if before is not None and counts is not None and sum(counts) > sum(before):
                # One service process serves every round: from the second on, its task cache holds
                # what the earlier rounds read, as a long-running server's would.
                pair.cache_hits = (counts[0] - before[0]) / (sum(counts) - sum(before))
            row.pairs.append(pair)
            hits = f", task cache hits {pair.cache_hits:.0%}" if pair.cache_hits is not None else ""
            written, per_request = pair.service.disk_bytes, pair.disk_per_request
            if "create" in scenario and written is not None and per_request is not None:
                hits += f", disk writes {written / 1_048_576:,.0f} MB ({per_request / 1024:.1f} KB a create)"
            print(f"{rate(pair.bare.requests_per_second)} / {rate(pair.service.requests_per_second)} req/s, "
                  f"{percent(pair.ratio)}, p99 {pair.service.p99_ms:.1f} ms{hits}"
                  f"{cpu_note(pair.bare, pair.service)} (load average {loadavg()})",
                  flush=True)
            if after is not None:
                after()
        return row

    for scenario, path, script in (
        ("get", "/", "get.lua"),
        ("list", "/", "list.lua"),
        ("stats", "/agents/tasks/stats", "stats.lua"),
        ("create", "/agents/tasks", "create.lua"),
    ):
        if scenario == "stats":
            service.settle()
            try:
                status = http_status(service.base + path, key, timeout=30.0)
            except OSError as error:
                print(f"  stats      n/a (the probe failed: {error})", flush=True)
                rows.append(Row("stats", backend, note=f"n/a: probe failed ({error})"))
                continue
            if status == 404:
                print("  stats      n/a (the service answers 404: no stats endpoint yet)", flush=True)
                rows.append(Row("stats", backend, note="n/a: 404, endpoint not built yet"))
                continue
        rows.append(rounds(scenario, service, path, script))

    info["rss_mb_after_run"] = round(service.rss_mb(), 1)
    info["rss_mb_peak"] = round(service.peak_rss_mb(), 1)
    created = sum(pair.service.requests for row in rows if row.scenario == "create" for pair in row.pairs)
    info["tasks_after_run"] = tasks + created
    print(f"  service RSS after the run: {info['rss_mb_after_run']} MB "
          f"(~{info['tasks_after_run']:,} tasks, warm-up creates not counted)", flush=True)

    if opts.worker:
        # The layout the README recommends for production: the API with TASKS_PROJECTIONS=off,
        # its views kept by a `tasks project` worker beside it (reads that must see a write pass
        # ?minPosition=). Same server settings; the worker is a second process.
        service.stop()
        worker = Worker(workdir, backend, database)
        worker.spawn()
        stack.callback(worker.stop)
        api = start_service(workdir, backend, database, key, 0, {"TASKS_PROJECTIONS": "off"}, " + worker")
        stack.callback(api.stop)
        lags: list[int] = []
        catch_ups: list[float | None] = []

        def caught_up() -> None:
            """The views' lag when wrk stopped, then wait (bounded) until the worker has caught up, so
            that its catching up does not run beside the next round's bare run."""
            lag, started = views_lag(api, key), time.monotonic()
            while (behind := views_lag(api, key)) > 0 and time.monotonic() - started < 120:
                time.sleep(0.2)
            lags.append(lag)
            catch_ups.append(round(time.monotonic() - started, 1) if behind == 0 else None)
            print(f"    the worker's views were {lag:,} events behind when wrk stopped; "
                  + (f"caught up {catch_ups[-1]} s later" if behind == 0
                     else f"still {behind:,} behind after 120 s"), flush=True)

        assert worker.process is not None
        rows.append(rounds(WORKER_CREATE, api, "/agents/tasks", "create.lua", after=caught_up,
                           others={"worker": worker.process.pid}))
        info["worker_lag_after_run"] = max(lags)
        info["worker_caught_up_seconds"] = (None if None in catch_ups
                                            else max(c for c in catch_ups if c is not None))
    for row in rows:
        judge(row, tasks, opts.connections)
    return rows, info


def table(rows: list[Row]) -> str:
    """Each row shows the round with the median ratio: the service's run, the bare run just before
    it, and the ratio of the two. With more than one round, a last column gives every round's
    ratio and p99; the target column judges the median ratio and the median p99."""
    several = any(len(row.pairs) > 1 for row in rows)
    head = ("scenario", "backend", "requests/s", "p50", "p99", "bare requests/s", "ratio", "non-2xx",
            "socket errors", "target") + (("rounds (ratio, p99)",) if several else ())
    lines = []
    for row in rows:
        shown = row.shown
        if shown is None:
            lines.append((row.scenario, row.backend, *["n/a"] * 7, row.note) + (("",) if several else ()))
            continue
        r = shown.service
        runs = [pair.service for pair in row.pairs]
        errors = sum((Counter(run.socket_errors) for run in runs), Counter())
        line = (row.scenario, row.backend, rate(r.requests_per_second), f"{r.p50_ms:.2f} ms",
                f"{r.p99_ms:.2f} ms", rate(shown.bare.requests_per_second), percent(row.ratio),
                str(sum(run.non_2xx for run in runs)),
                ", ".join(f"{k} {v}" for k, v in errors.items() if v) or "0", row.target)
        if several:
            line += (" · ".join(f"{percent(p.ratio)} {p.service.p99_ms:.1f} ms"
                                + (f" ({p.cache_hits:.0%} hits)" if p.cache_hits is not None else "")
                                for p in row.pairs),)
        lines.append(line)
    widths = [max(len(head[i]), *(len(line[i]) for line in lines)) for i in range(len(head))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else ""
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    wrk_version = (version.stdout or version.stderr).splitlines()[0].split(" [")[0] if version else "wrk"
    import uvicorn

    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, {wrk_version}")


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tasks-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of an unmeasured wrk run before each")
    parser.add_argument("--timeout", type=int, default=10,
                        help="wrk's per-request timeout, seconds (a request slower than this is a socket "
                             "error and is left out of the latencies)")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks seeded before the reads")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, SQLite file)")
    parser.add_argument("--no-worker", dest="worker", action="store_false",
                        help="skip the create run with the views in a `tasks project` worker")
    parser.add_argument("--rounds", type=int, default=1,
                        help="pairs (bare run, then service run) per scenario; the table shows the round "
                             "with the median ratio")
    args = parser.parse_args(argv)
    if min(args.tasks, args.duration, args.connections, args.threads, args.rounds) < 1:
        parser.error("--tasks, --duration, --connections, --threads and --rounds must be at least 1")
    if shutil.which("wrk") is None:
        print("wrk is not installed. It is a Debian package:\n    apt-get update && apt-get install -y wrk",
              file=sys.stderr)
        return 2
    opts = Options(args.duration, args.connections, args.threads, args.warmup, args.timeout, args.worker,
                   args.rounds)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    key = "bench-" + os.urandom(12).hex()
    about = machine()
    print(f"{about}\nwrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s --latency "
          f"(warm-up {opts.warmup} s each), {opts.rounds} round(s) a scenario (bare run, then service); "
          f"both servers: uvicorn.run defaults (1 worker, loop/http auto), "
          f"log level warning; {args.tasks:,} seeded tasks", flush=True)

    signal.signal(signal.SIGTERM, _on_sigterm)
    rows: list[Row] = []
    infos: dict[str, dict[str, Any]] = {}
    with workspace(args.keep) as workdir, contextlib.ExitStack() as stack:
        bare = start_bare(workdir)
        stack.callback(bare.stop)
        for backend in backends:
            backend_rows, infos[backend] = run_backend(backend, workdir, bare, opts, args.tasks, key)
            rows += backend_rows

    print(f"\n{about}")
    given = argv if argv is not None else sys.argv[1:]
    print(f"command: .venv/bin/python bench/http_bench.py {' '.join(given)}")
    print(table(rows))
    for backend, info in infos.items():
        print(f"{backend}: service RSS {info['rss_mb_after_start']} MB after start with "
              f"{args.tasks:,} tasks (its views caught up), "
              f"{info['rss_mb_after_run']} MB after the run (~{info['tasks_after_run']:,} tasks), "
              f"peak {info['rss_mb_peak']} MB; seeding {info['seed_seconds']} s, "
              f"startup with every view's catch-up {info['startup_seconds']} s")
        if "worker_lag_after_run" in info:
            caught = info["worker_caught_up_seconds"]
            print(f"{backend}: {WORKER_CREATE}: the views were {info['worker_lag_after_run']:,} events behind "
                  f"when wrk stopped, " + (f"caught up {caught} s later" if caught is not None
                                          else "not caught up after 120 s"))
    failed = [(row, side, found) for row in rows for pair in row.pairs
              for side, run in (("bare", pair.bare), ("service", pair.service))
              if (found := problems(run, opts.connections))]
    for row, side, found in failed:
        print(f"!!! {row.scenario} on {row.backend} ({side} run): {'; '.join(found)}. Requests FAILED or "
              f"never finished, and wrk's figures count only those that did !!!", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": about, "options": asdict(opts), "tasks": args.tasks, "servers": infos,
            "rows": [{**asdict(row), "ratio": row.ratio, "median_p99_ms": row.median_p99_ms} for row in rows],
        }, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; every server this run started has been stopped", file=sys.stderr)
        sys.exit(130)
