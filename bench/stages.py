"""CPU per item of each stage of a micro benchmark, the best and the median of its rounds,
and a CPU profile of it (bench/writer_cpu.py, bench/get_miss.py)."""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from typing import Any


class Stages:
    """``timed(name, work)`` runs ``work`` and keeps its thread CPU time per item, in µs."""

    def __init__(self, items: int) -> None:
        self.items = items
        self.figures: dict[str, list[float]] = {}

    def timed(self, name: str, work: Callable[[], Any]) -> Any:
        start = time.thread_time()  # CPU, not wall: a commit waits for the disk
        result = work()
        self.figures.setdefault(name, []).append((time.thread_time() - start) * 1e6 / self.items)
        return result

    def print(self, title: str, width: int = 34) -> None:
        print(title)
        for name, figures in self.figures.items():
            figures.sort()
            print(f"  {name:{width}s} {figures[0]:7.1f}   (median {figures[len(figures) // 2]:7.1f})")


def profile(rounds: int, work: Callable[[Any], Any], setup: Callable[[], Any] = lambda: None) -> None:
    """cProfile of ``work(setup())`` over ``rounds`` rounds (``setup`` not profiled), by own CPU time."""
    profiler = cProfile.Profile(time.thread_time)  # CPU, not wall: a commit waits for the disk
    for _ in range(rounds):
        prepared = setup()
        profiler.enable()
        work(prepared)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
