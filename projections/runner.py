"""A supervised follower of the event log that keeps one view up to date.

It reads the log in batches after the view's tracked position and hands each
batch to the view, which applies it and records the batch's last position in
one transaction. A failing batch leaves the view where it was; the follower
reports ``failed`` with the error and tries again with back-off, so it never
skips an event.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError, Tracking

from domain.application import TaskApplication
from domain.task import TaskEvent

log = logging.getLogger(__name__)


class View(Protocol):
    name: str

    def apply_batch(self, batch: Sequence[tuple[int, TaskEvent]], tracking: Tracking) -> None: ...

    def position(self) -> int: ...


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    status: str
    position: int
    head: int
    last_error: str | None


class ProjectionRunner:
    """Follows the application's log and applies it to one view."""

    def __init__(
        self,
        app: TaskApplication,
        view: View,
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self.app = app
        self.view = view
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._position = view.position()
        self._changed = threading.Condition()
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "stopped"
        self.last_error: str | None = None

    @property
    def position(self) -> int:
        return self._position

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"projection-{self.view.name}", daemon=True)
        self.status = "running"
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.status = "stopped"

    def poke(self) -> None:
        """New events were written: look now rather than at the next poll."""
        self._wake.set()

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the view reflects the log up to ``position`` (or time runs out)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._position >= position, timeout)

    async def wait_async(self, position: int, timeout: float) -> bool:
        """wait_for() for the event loop: no thread is held while waiting."""
        if self._position >= position:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (position, loop, future)
        with self._changed:
            if self._position >= position:
                return True
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            with self._changed:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)
            return self._position >= position

    def catch_up(self) -> int:
        """Apply everything up to the log's head now, in this thread; returns events applied."""
        applied = 0
        while (count := self.step()) > 0:
            applied += count
        return applied

    def step(self) -> int:
        """Apply the next batch after the tracked position; returns its size."""
        notifications = self.app.recorder.select_notifications(
            start=self._position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        to_event = self.app.mapper.to_domain_event
        batch: list[tuple[int, Any]] = [(n.id, to_event(n)) for n in notifications]
        last = notifications[-1].id
        self.view.apply_batch(batch, Tracking(self.view.name, last))
        with self._changed:
            self._position = last
            self._changed.notify_all()
            ready = [w for w in self._async_waiters if w[0] <= last]
            self._async_waiters = [w for w in self._async_waiters if w[0] > last]
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_release, future)
        return len(batch)

    def describe(self) -> ProjectionStatus:
        head = self.app.recorder.max_notification_id() or 0
        return ProjectionStatus(self.view.name, self.status, self._position, head, self.last_error)

    def _resync(self) -> None:
        """Take the view's recorded position (it may have moved in another process)."""
        try:
            position = self.view.position()
        except Exception:  # noqa: BLE001 - unreachable store: keep ours, the next step retries
            return
        with self._changed:
            self._position = max(self._position, position)

    def _run(self) -> None:
        backoff = self.poll_interval
        while not self._stopping.is_set():
            try:
                applied = self.step()
            except IntegrityError:  # another process applied this batch first: carry on from there
                self._resync()
                continue
            except Exception as error:  # supervised: report, back off, retry the same batch
                log.exception("projection %s failed at position %s", self.view.name, self._position)
                self.status = "failed"
                self.last_error = f"{type(error).__name__}: {error}"
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.status, self.last_error, backoff = "running", None, self.poll_interval
            if applied < self.batch_size:
                self._wake.wait(self.poll_interval)
                self._wake.clear()


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
