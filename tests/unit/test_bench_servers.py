"""bench/servers.py: the summary compares each server's service with that server's own bare app.

No timings are asserted here; bench/servers.py prints them."""

from __future__ import annotations

from tests.unit.test_bench_harness import load


def run(server: str, scenario: str, rps: float, p99: float = 10.0, cpu_us: float = 100.0) -> dict[str, object]:
    return {"server": server, "scenario": scenario, "rps": rps, "p99": p99, "cpu_us": cpu_us}


def test_the_summary_takes_medians_and_each_servers_own_bare_run_as_the_ratio_base() -> None:
    rows = [
        run("uvicorn", "bare GET", 8_000), run("uvicorn", "bare GET", 10_000), run("uvicorn", "bare GET", 2_000),
        run("granian", "bare GET", 20_000),
        run("uvicorn", "bare POST", 5_000), run("granian", "bare POST", 4_000),
        run("uvicorn", "get", 2_000), run("granian", "get", 2_000),
        run("uvicorn", "create", 1_000, p99=30.0, cpu_us=900.0), run("granian", "create", 1_000),
    ]
    lines = {tuple(cell.strip() for cell in line.strip("|").split("|"))[:6]
             for line in load("servers").summary(rows).splitlines()[2:]}
    assert ("bare GET", "uvicorn", "8,000", "10.0 ms", "100 µs", "—") in lines  # the median of three runs
    assert ("get", "uvicorn", "2,000", "10.0 ms", "100 µs", "25.0%") in lines  # over uvicorn's bare GET
    assert ("get", "granian", "2,000", "10.0 ms", "100 µs", "10.0%") in lines  # over granian's, not uvicorn's
    assert ("create", "uvicorn", "1,000", "30.0 ms", "900 µs", "20.0%") in lines  # over the bare POST
    assert ("create", "granian", "1,000", "10.0 ms", "100 µs", "25.0%") in lines
    assert not any(line[0] == "list" for line in lines)  # a scenario without runs has no row
