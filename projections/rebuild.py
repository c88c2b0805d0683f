"""Blue/green rebuild: build a view's new copy beside the live one, then swap it in.

Queries keep being answered from the live copy while the new one is filled
in large batches (and indexed only once it is full, which is faster); the
swap repoints the view in one transaction, once the new copy has reached
the live one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from domain.application import TaskApplication
from projections.runner import ProjectionRunner


class Rebuildable(Protocol):
    name: str

    def beside(self) -> Any: ...

    def swap_in(self, fresh: Any) -> bool: ...

    def position(self) -> int: ...


def rebuild(app: TaskApplication, view: Rebuildable, *, batch_size: int = 20_000,
            progress: Callable[[int, int], None] | None = None, max_rounds: int = 100,
            reader: Callable[[int, int], list[tuple[int, Any]]] | None = None) -> int:
    """Rebuild ``view`` from position 0 beside itself and swap it in; returns the new copy's position."""
    fresh = view.beside()
    try:
        runner = ProjectionRunner(app, fresh, batch_size=batch_size, reader=reader)
        runner.catch_up(progress)
        fresh.create_indexes()
        for _ in range(max_rounds):
            runner.catch_up(progress)
            if view.swap_in(fresh):
                return int(fresh.position())
    except BaseException:
        fresh.discard()
        raise
    fresh.discard()
    raise RuntimeError(f"{view.name}: the live copy kept moving ahead; the rebuild was not swapped in")
