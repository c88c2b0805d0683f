"""bench/: the wrk report parser on real wrk output, and the bare baseline app's two endpoints.

No timings are asserted here; bench/http_bench.py prints them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    """A script of bench/ (not an installed package), loaded by path once."""
    module_name = f"bench_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


# Captured from wrk 4.1.0 (Debian) on this machine.
CLEAN = """\
Running 2s test @ http://127.0.0.1:8911/agents/tasks/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.37ms   14.87ms 213.73ms   97.29%
    Req/Sec     7.40k     1.75k   15.53k    87.80%
  Latency Distribution
     50%    4.03ms
     75%    4.40ms
     90%    6.16ms
     99%   92.27ms
  30197 requests in 2.10s, 34.99MB read
Requests/sec:  14381.56
Transfer/sec:     16.66MB
"""

WITH_ERRORS = """\
Running 3s test @ http://127.0.0.1:8913/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.37ms    2.68ms  44.86ms   98.13%
    Req/Sec     4.48k     2.99k    9.13k    61.54%
  Latency Distribution
     50%  815.00us
     75%    2.04ms
     90%    2.90ms
     99%    5.44ms
  6650 requests in 3.01s, 0.87MB read
  Socket errors: connect 0, read 0, write 0, timeout 65
  Non-2xx or 3xx responses: 742
Requests/sec:   2209.11
Transfer/sec:    297.53KB
"""

SEED_BODY = {
    "task": "Analyze Q4 revenue trends and create executive report",
    "agentId": "amy",
    "context": {"dataSource": "revenue_q4_2024.csv", "focusAreas": ["growth", "churn", "expansion"],
                "targetAudience": "C-suite executives"},
    "priority": "high",
    "deadline": "2024-10-30T17:00:00Z",
    "deliverables": ["pdf-report", "presentation", "data-analysis"],
}


def test_parser_reads_a_clean_wrk_report() -> None:
    result = load("http_bench").parse_wrk(CLEAN)
    assert result.requests == 30197
    assert result.seconds == pytest.approx(2.10)
    assert result.requests_per_second == pytest.approx(14381.56)
    assert result.p50_ms == pytest.approx(4.03)
    assert result.p99_ms == pytest.approx(92.27)
    assert result.non_2xx == 0
    assert result.error_count == 0


def test_parser_reads_microseconds_non_2xx_and_socket_errors() -> None:
    result = load("http_bench").parse_wrk(WITH_ERRORS)
    assert result.p50_ms == pytest.approx(0.815)
    assert result.p99_ms == pytest.approx(5.44)
    assert result.non_2xx == 742
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 65}
    assert result.error_count == 65


def test_parser_refuses_output_that_is_not_a_wrk_report() -> None:
    with pytest.raises(ValueError, match="wrk output"):
        load("http_bench").parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_durations_in_every_unit() -> None:
    duration = load("http_bench")._duration_ms
    assert duration("815.00us") == pytest.approx(0.815)
    assert duration("1.50s") == pytest.approx(1500.0)
    assert duration("2.00m") == pytest.approx(120_000.0)


def test_bare_app_serves_a_json_get() -> None:
    with TestClient(load("bare").create_app()) as client:
        response = client.get("/agents/tasks/task_0123")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is True
    assert body["data"]["taskId"] == "task_0123"
    assert body["data"]["trackingUrl"].endswith("/agents/tasks/task_0123")


def test_bare_app_validates_the_create_body_like_the_service() -> None:
    with TestClient(load("bare").create_app()) as client:
        created = client.post("/agents/tasks", json=SEED_BODY)
        misspelt = client.post("/agents/tasks", json={**SEED_BODY, "agentID": "amy"})
        bad_priority = client.post("/agents/tasks", json={**SEED_BODY, "priority": "asap"})
        not_json = client.post("/agents/tasks", content=b"{", headers={"content-type": "application/json"})
    assert created.status_code == 201
    data = created.json()["data"]
    assert (data["status"], data["agentId"], data["priority"]) == ("assigned", "amy", "high")
    assert created.headers["location"] == data["trackingUrl"]
    assert misspelt.status_code == 422 and "agentID" in misspelt.json()["error"]["message"]
    assert bad_priority.status_code == 422 and "$.priority" in bad_priority.json()["error"]["message"]
    assert not_json.status_code == 400


def test_the_wrk_create_body_is_the_seed_body() -> None:
    """create.lua sends the seed's body, so both servers decode the same bytes."""
    lua = (BENCH / "wrk" / "create.lua").read_text()
    pieces = [line.split("[[", 1)[1].rsplit("]]", 1)[0] for line in lua.splitlines() if "[[" in line]
    assert json.loads("".join(pieces)) == SEED_BODY


def test_a_run_with_failures_or_unfinished_requests_is_flagged() -> None:
    harness = load("http_bench")
    assert harness.problems(harness.parse_wrk(CLEAN), connections=64) == []
    flagged = harness.problems(harness.parse_wrk(WITH_ERRORS), connections=64)
    assert flagged == ["742 non-2xx responses", "65 socket errors (timeout 65)"]
    stalled = harness.WrkResult(requests=1, seconds=10.02, requests_per_second=0.1, p50_ms=9160, p99_ms=9160)
    assert "only 1 requests completed" in harness.problems(stalled, connections=64)[0]


def _run(rps: float, p99: float = 10.0, non_2xx: int = 0) -> object:
    return load("http_bench").WrkResult(requests=int(rps * 10), seconds=10.0, requests_per_second=rps,
                                        p50_ms=p99 / 2, p99_ms=p99, non_2xx=non_2xx)


def test_a_row_shows_its_median_round_and_is_judged_by_the_medians() -> None:
    """Each round pairs the service's run with the bare run just before it; the row shows the round
    with the median ratio (a real run, not figures mixed from several) and the target column
    judges the median ratio and the median p99, so one slow minute of the machine decides nothing."""
    harness = load("http_bench")
    row = harness.Row("get", "sqlite", [
        harness.Pair(_run(10_000), _run(6_000, p99=40.0)),   # 60%, p99 missed
        harness.Pair(_run(12_000), _run(4_800, p99=20.0)),   # 40%
        harness.Pair(_run(8_000), _run(4_400, p99=22.0)),    # 55%
    ])
    assert row.shown is row.pairs[2] and row.ratio == pytest.approx(0.55)
    assert row.median_p99_ms == 22.0
    harness.judge(row, tasks=100_000, connections=64)
    assert row.target == "≥50% ok, p99≤25ms ok"
    printed = harness.table([row])
    assert "| 4,400 " in printed and "| 8,000 " in printed and "55.0%" in printed
    assert "60.0% 40.0 ms · 40.0% 20.0 ms · 55.0% 22.0 ms" in printed
    row.pairs[1].cache_hits = 0.42  # a GET round says how much of it its task cache served
    assert "40.0% 20.0 ms (42% hits) · 55.0%" in harness.table([row])

    row.pairs[2] = harness.Pair(_run(8_000, non_2xx=3), _run(3_000, p99=30.0))  # 37.5%: now the median
    harness.judge(row, tasks=100_000, connections=64)
    assert row.ratio == pytest.approx(0.40)  # 37.5, 40, 60: the middle one
    assert row.target == "FAILED REQUESTS (see below), ≥50% MISS, p99≤25ms MISS"  # a bare run's failure counts


def test_one_round_prints_no_rounds_column_and_an_even_count_shows_the_lower_middle() -> None:
    harness = load("http_bench")
    one = harness.Row("create", "postgres", [harness.Pair(_run(10_000), _run(3_500, p99=24.0))])
    harness.judge(one, tasks=100_000, connections=64)
    assert one.target == "≥30% ok, p99≤25ms ok"
    assert "rounds" not in harness.table([one])
    two = harness.Row("create", "sqlite", [harness.Pair(_run(10_000), _run(5_200)),
                                           harness.Pair(_run(10_000), _run(4_900))])
    assert two.ratio == pytest.approx(0.49)
    assert harness.Row("stats", "sqlite", note="n/a: 404").shown is None


@pytest.mark.parametrize("scenario", ["bare-get", "bare-post", "get-cached", "get-uncached", "create"])
def test_the_instructions_driver_gets_the_expected_answer_to_every_request(tmp_path: Path,
                                                                         scenario: str) -> None:
    """bench.instructions counts a scenario's instructions only if each of its requests got the
    answer a client would expect (200 for a GET of a seeded task, 201 for a create): a driver
    getting 401s or 404s would count the cost of a refusal. Run here without valgrind."""
    seeded, ids = tmp_path / "seeded.db", tmp_path / "ids.txt"
    load("http_bench").seed(f"sqlite:///{seeded}", 40, load("instructions").KEY, ids)
    done = subprocess.run([sys.executable, "-m", "bench.instructions", "--drive", scenario,
                           "--requests", "64", "--database", f"sqlite:///{seeded}", "--ids", str(ids)],
                          capture_output=True, text=True, timeout=120, cwd=BENCH.parent)
    assert done.returncode == 0, done.stdout + done.stderr


DISKSTATS = """\
 253       0 vda 31446 12 2189618 11020 2876301 1521 83517552 2145771 0 1718172 2176400 0 0 0 0 0 0
 253       1 vda1 31000 12 2180000 11000 2876000 1521 83500000 2145000 0 1718000 2176000 0 0 0 0 0 0
   7       0 loop0 61 0 2544 8 0 0 0 0 0 40 8 0 0 0 0 0 0
 252       0 zram0 24 0 168 0 4 0 32 0 0 8 0 0 0 0 0 0
 259       0 nvme0n1 100 0 800 10 50 0 1000 5 0 20 15 0 0 0 0 0 0
"""


def test_disk_writes_count_whole_disks_once() -> None:
    # a create run reports what the machine wrote to disk: a partition, a loop or a RAM device
    # would count a write twice or count one that never reached a disk
    harness = load("http_bench")
    written = harness.disk_written_bytes(DISKSTATS, ["vda", "loop0", "zram0", "nvme0n1"])
    assert written == (83517552 + 1000) * 512
    assert harness.disk_written_bytes("", []) == 0
    service = _run(5_000)
    service.disk_bytes = 50_000 * 8192
    pair = harness.Pair(_run(10_000), service)
    assert pair.disk_per_request == 8192  # 50,000 creates in the measured run


PROC_STAT = """cpu  4705 150 1120 16250 520 0 25 0 0 0
cpu0 2400 75 560 8100 260 0 12 0 0 0
cpu1 2305 75 560 8150 260 0 13 0 0 0
intr 114930548 113199788 3 0 5 263 0 0 0 0
"""


def test_idle_cpu_counts_idle_and_iowait_of_every_core() -> None:
    # the bench tells a server held by its interpreter lock (idle cores beside it) from a full machine
    harness = load("http_bench")
    ticks = harness.os.sysconf("SC_CLK_TCK")
    assert harness.idle_cpu_seconds(PROC_STAT) == pytest.approx((16250 + 520) / ticks)
    assert harness.idle_cpu_seconds("intr 1 2 3\n") is None
    assert harness.idle_cpu_seconds() is not None  # this machine's /proc/stat


def test_a_threads_cpu_is_read_from_proc() -> None:
    # the service's event loop is uvicorn's main thread: its CPU must be told from the writer's
    harness = load("http_bench")
    pid = harness.os.getpid()
    main_before, process_before = harness.thread_cpu_seconds(pid), harness.cpu_seconds(pid)
    spin_until = harness.time.thread_time() + 0.3
    while harness.time.thread_time() < spin_until:
        pass
    assert harness.thread_cpu_seconds(pid) - main_before >= 0.2
    assert harness.cpu_seconds(pid) - process_before >= 0.2


def test_cpu_use_is_per_request_with_the_other_processes_and_the_idle_cores() -> None:
    harness = load("http_bench")
    before = (10.0, 6.0, {"worker": 3.0, "postgres": 1.0}, 100.0)
    after = (11.5, 7.0, {"worker": 3.5, "postgres": 1.25}, 105.0)
    used = harness.cpu_use(before, after, 10_000, 10.0)
    assert used.server_us == pytest.approx(150.0)
    assert used.loop_us == pytest.approx(100.0)
    assert used.others_us == pytest.approx({"worker": 50.0, "postgres": 25.0})
    assert used.idle_cores == pytest.approx(0.5)
    assert harness.cpu_use(before, after, 0, 10.0) is None
    assert harness.cpu_use(before[:3] + (None,), after, 10, 1.0).idle_cores == -1.0
    bare, service = _run(20_000), _run(10_000)
    bare.cpu = harness.CpuUse(60.0, 58.0, 0.1)
    service.cpu = used
    note = harness.cpu_note(bare, service)
    assert "bare 60 µs, service 150 µs (event loop 100), worker 50 µs, postgres 25 µs" in note
    assert "0.50 of" in note
    assert harness.cpu_note(_run(1), _run(1)) == ""
