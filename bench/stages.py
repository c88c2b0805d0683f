"""CPU per item of each stage of a micro benchmark, the best and the median of its rounds
(bench/writer_cpu.py, bench/get_miss.py)."""

from __future__ import annotations

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
