"""Group commit: one thread gathers the commands of many requests and saves
them in one transaction, so a commit's cost is shared by all of them.

A request waits on an asyncio future that the writer resolves once the
transaction holding its events has committed — a 2xx still means durable.
Batches form by themselves: while one commits, the next requests queue up.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from domain.application import AggregateCache, Job, Outcome, TaskApplication
from domain.task import TaskEvent

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    job: Job
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop


class CommandWriter:
    """The one thread in a process that runs commands against the event store."""

    def __init__(self, app: TaskApplication, *, max_batch: int = 256, cache_size: int = 10_000,
                 on_saved: Callable[[list[tuple[int, TaskEvent]]], None] | None = None) -> None:
        self.app = app
        self.on_saved = on_saved  # e.g. apply the batch to this process's views before answering
        self.max_batch = max_batch
        self.cache = AggregateCache(cache_size)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="command-writer", daemon=True)
        self.batches = 0
        self.commands = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    async def submit(self, job: Job) -> Outcome:
        """Queue a command and wait until it is committed (or refused)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Pending(job, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._finish(batch)
                    return
                batch.append(item)
            self._finish(batch)

    def _finish(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self.app.run_batch([p.job for p in batch], self.cache, self.on_saved)
        except Exception as error:  # the store failed: every request in the batch learns it
            log.warning("batch of %d commands failed: %s", len(batch), error)
            self.cache.clear()
            outcomes = [error] * len(batch)
        self.batches += 1
        self.commands += len(batch)
        # One wake-up per event loop for the whole batch, not one per request: each
        # call_soon_threadsafe writes to the loop's wake-up pipe and hands over the GIL.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome]]] = {}
        for pending, outcome in zip(batch, outcomes):
            by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, results in by_loop.items():
            loop.call_soon_threadsafe(_resolve, results)


def _resolve(results: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    for future, outcome in results:
        if not future.done():  # the client may have gone away
            future.set_result(outcome)
