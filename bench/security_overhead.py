"""What security costs per request: plain creates vs creates with Idempotency-Key vs replays,
and the 50-at-once idempotent create. In-process (TestClient) on a throwaway SQLite file.

    .venv/bin/python bench/security_overhead.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.testclient import TestClient  # noqa: E402

from adapters.config import Settings  # noqa: E402
from app import create_app  # noqa: E402

KEY = "bench-key"


def timed(label: str, n: int, send) -> None:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for i in range(n):
        response = send(i)
        assert response.status_code in (200, 201), response.text
    elapsed = time.perf_counter() - start
    print(f"{label:<38} {n:>5} requests  {elapsed / n * 1000:7.2f} ms/request  {n / elapsed:8.1f} req/s")


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database=f"sqlite:///{folder}/bench.db", bootstrap_key=KEY)
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as client:
            body = {"task": "Benchmark task", "agentId": "amy"}
            timed("create, no Idempotency-Key", n, lambda i: client.post("/agents/tasks", json=body))
            timed("create, new Idempotency-Key", n,
                  lambda i: client.post("/agents/tasks", json=body, headers={"Idempotency-Key": f"k{i}"}))
            timed("create, replayed Idempotency-Key", n,
                  lambda i: client.post("/agents/tasks", json=body, headers={"Idempotency-Key": f"k{i}"}))
            timed("list (auth + role check + query)", n, lambda i: client.get("/agents/tasks?limit=10"))

            barrier = threading.Barrier(50)

            def racer(_: int) -> bytes:
                barrier.wait()
                return client.post("/agents/tasks", json=body, headers={"Idempotency-Key": "race"}).content

            start = time.perf_counter()
            with ThreadPoolExecutor(50) as pool:
                answers = set(pool.map(racer, range(50)))
            print(f"50 identical idempotent creates at once: {len(answers)} distinct answer(s), "
                  f"{(time.perf_counter() - start) * 1000:.0f} ms for all")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
