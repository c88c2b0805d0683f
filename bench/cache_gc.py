"""The garbage collector's pauses while the task cache churns, as at 1M tasks (issue #7).

    .venv/bin/python -m bench.cache_gc [--entries 45000] [--misses 400000] [--growth 20]

A GET of an uncached task puts a new entry into a full ``TaskViewCache`` and so evicts the
least recently used one. This does that ``--misses`` times on a cache sized for
``--entries`` entries of ~1 KB (64 MB holds ~45,000), with the server's collector settings
(``app.tune_gc``: objects alive before the run frozen, young generation collected every
50,000 net new container objects). Each miss also makes some short-lived containers, and
one in ``--growth`` misses leaves one behind (a memo entry, a metric child: the slow net
growth that eventually sets off a collection). Every collection is timed
(``gc.callbacks``); it prints how many there were, their total and their longest pause.

A collection stops the whole process, the event loop included: every request in flight
waits for it.
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from typing import Any

from adapters.http.task_cache import ENTRY_OVERHEAD, CachedTask, TaskViewCache
from app import tune_gc

VIEW = b"x" * 1000  # about a task's JSON view


def run(entries: int, misses: int, growth: int) -> dict[str, Any]:
    cache = TaskViewCache(max_bytes=entries * (len(VIEW) + len("http://127.0.0.1:8000/") + ENTRY_OVERHEAD))
    ids = [uuid.uuid4().int for _ in range(entries * 3)]
    kept: list[dict[str, int]] = []
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    tune_gc()
    gc.callbacks.append(timed)
    try:
        clock = time.perf_counter()
        for i in range(misses):
            task_id = uuid.UUID(int=ids[i % len(ids)])  # as parse_id gives it
            scratch = [{"row": i} for _ in range(8)]  # a request's short-lived containers
            del scratch
            if i % growth == 0:
                kept.append({"i": i})
            view = VIEW + i.to_bytes(4, "little")  # an object of its own, as each presented task is
            cache.put(task_id, CachedTask(1, "default", None, "http://127.0.0.1:8000/", view))
        elapsed = time.perf_counter() - clock
    finally:
        gc.callbacks.remove(timed)
    longest = max((p for _, p in pauses), default=0.0)
    return {"collections": len(pauses), "total_ms": sum(p for _, p in pauses) * 1e3, "longest_ms": longest * 1e3,
            "by_generation": {g: sum(1 for gg, _ in pauses if gg == g) for g in sorted({g for g, _ in pauses})},
            "seconds": elapsed, "entries": len(cache)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=45_000, help="entries the cache holds when full")
    parser.add_argument("--misses", type=int, default=400_000, help="puts of new entries (GETs that missed)")
    parser.add_argument("--growth", type=int, default=20, help="one lasting container every this many misses")
    args = parser.parse_args()
    found = run(args.entries, args.misses, args.growth)
    print(f"{args.misses:,} misses into a cache of {found['entries']:,} entries in {found['seconds']:.1f} s: "
          f"{found['collections']} collections {found['by_generation']}, "
          f"{found['total_ms']:.0f} ms in all, the longest {found['longest_ms']:.1f} ms")


if __name__ == "__main__":
    main()
