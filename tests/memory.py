"""What a bounded cache really holds: the memory traced while it is filled, against what it counts."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any


def held_while(fill: Callable[[], None]) -> int:
    """Bytes still allocated after ``fill()`` that were not before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def assert_counted(cache: Any, held: int) -> None:
    """A full cache within its bound holds no more than the bytes it counts."""
    assert len(cache) > 500 and cache.bytes <= cache.max_bytes
    assert held <= cache.bytes, \
        f"{held / len(cache):.0f} bytes an entry, {cache.bytes / len(cache):.0f} accounted"
