"""A supervised follower of the event log that keeps one view up to date.

It reads the log in batches after the view's tracked position and hands each
batch to the view, which applies it and records the batch's last position in
one transaction. A failing batch leaves the view where it was; the follower
reports ``failed`` with the error and tries again with back-off, so it never
skips an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Tracking

from domain.application import TaskApplication
from domain.task import TaskEvent


class PositionMovedError(IntegrityError):
    """Raised by a view when its tracked position is no longer the one a batch was read
    after (another process applied events, or a rebuild was swapped in)."""

log = logging.getLogger(__name__)

FED_RECENTLY = 1.0  # seconds since the writer last fed a view for it to count as fed
FED_POLL = 0.5  # a fed follower's poll interval: it looks for other processes' events


class View(Protocol):
    name: str

    def apply_batch(self, batch: Sequence[tuple[int, TaskEvent]], tracking: Tracking,
                    after: int | None = None) -> None: ...

    def position(self) -> int: ...


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    status: str
    position: int
    head: int
    last_error: str | None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class ProjectionRunner:
    """Follows the application's log and applies it to one view."""

    def __init__(
        self,
        app: TaskApplication,
        view: View,
        *,
        batch_size: int = 2000,
        poll_interval: float = 0.05,
        max_backoff: float = 5.0,
        reader: Callable[[int, int], list[tuple[int, Any]]] | None = None,
    ) -> None:
        self.app = app
        self.view = view
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.read = reader or self._read
        self._position = view.position()
        self._changed = threading.Condition()
        self._applying = threading.Lock()  # one batch at a time: the runner's own, or one written in-process
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "stopped"
        self.last_error: str | None = None
        self.applied_in_process = 0  # batches taken straight from this process's writer
        self._fed_at = 0.0  # when the writer last handed this runner a batch

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

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything up to the log's head now, in this thread; returns events applied.
        ``progress(applied, position)`` is called after each batch."""
        self._position = self.view.position()
        applied = 0
        while (count := self.step()) > 0:
            applied += count
            if progress is not None:
                progress(count, self._position)
        return applied

    def step(self) -> int:
        """Apply the next batch after the tracked position; returns its size."""
        with self._applying:
            batch = self.read(self._position, self.batch_size)
            applied = self._apply(batch) if batch else True
        if not applied:
            return self.step()
        return len(batch)

    def apply_written(self, batch: Sequence[tuple[int, Any]]) -> bool:
        """Apply events this process has just committed, straight from memory: the part of the
        batch after the view's position (its follower may have read the rest from the log
        first), when the batch has no gap and reaches back to that position (so no other
        process's events can lie between); otherwise leave them to the follower, which reads
        them from the log. Never raises: the events are committed whatever happens here."""
        if not batch or self.status != "running":
            return False
        if not gapless(batch):
            self.poke()
            return False
        try:
            with self._applying:
                rest = unapplied(self._position, batch)
                applied = rest is not None and (not rest or self._apply(rest))
        except Exception:  # noqa: BLE001 - the follower retries from the log, supervised
            log.warning("projection %s could not apply written events in-process", self.view.name, exc_info=True)
            applied = False
        if not applied:
            self.poke()
        elif rest:
            self.applied_in_process += 1
            self._fed_at = time.monotonic()
        return applied

    def _apply(self, batch: list[tuple[int, Any]]) -> bool:
        """Apply one batch read after the current position; False if the view had moved."""
        last = batch[-1][0]
        try:
            self.view.apply_batch(batch, Tracking(self.view.name, last), after=self._position)
        except PositionMovedError:
            # Another process applied these, or a rebuild was swapped in: read on from where the view is.
            self._moved_to(self.view.position())
            return False
        self._moved_to(last)
        return True

    def _moved_to(self, position: int) -> None:
        """Record the view's new position and release whoever waits for it."""
        with self._changed:
            self._position = position
            self._changed.notify_all()
            ready = [w for w in self._async_waiters if w[0] <= position]
            self._async_waiters = [w for w in self._async_waiters if w[0] > position]
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_release, future)

    def _resync(self) -> None:
        """Take the view's recorded position, unless the store cannot even say it."""
        try:
            position = self.view.position()
        except Exception:  # noqa: BLE001 - unreachable store: keep ours, the next step retries
            return
        self._moved_to(position)

    def _read(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """The next events after ``after``, through the library's notifications and mapper."""
        notifications = self.app.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
        to_event = self.app.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    def describe(self) -> ProjectionStatus:
        head = self.app.recorder.max_notification_id() or 0
        return ProjectionStatus(self.view.name, self.status, self._position, head, self.last_error)

    def attempt(self) -> int | None:
        """One supervised step: the batch's size, or None when it failed — the view is then
        ``failed`` with the error kept, and its position is taken again from the view."""
        try:
            applied = self.step()
        except Exception as error:  # supervised: report; the caller backs off and retries the same batch
            log.exception("projection %s failed at position %s", self.view.name, self._position)
            self.status = "failed"
            self.last_error = f"{type(error).__name__}: {error}"
            self._resync()
            return None
        self.status, self.last_error = "running", None
        return applied

    def _run(self) -> None:
        backoff = self.poll_interval
        while not self._stopping.is_set():
            applied = self.attempt()
            if applied is None:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.poll_interval
            if applied < self.batch_size:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        """How long to sleep when caught up. While this process's writer feeds the view, polling
        would only race it for batches it is about to hand over; a poke (a batch the writer could
        not apply, or a command waiting) still wakes the follower at once."""
        if time.monotonic() - self._fed_at < FED_RECENTLY:
            return max(self.poll_interval, FED_POLL)
        return self.poll_interval


def gapless(batch: Sequence[tuple[int, Any]]) -> bool:
    """Whether a batch's positions run one after another, in order, with none missing."""
    first = batch[0][0]
    return [position for position, _ in batch] == list(range(first, first + len(batch)))


def unapplied(position: int, batch: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]] | None:
    """The events of a gapless batch after a view's position: all of them when the view is just
    before the batch, the tail when its follower has already read the head from the log, none
    when it has read past the batch — and None when the view is behind the batch's first event
    (the events between are only in the log)."""
    first = batch[0][0]
    if position < first - 1:
        return None
    return list(batch[position - first + 1:])


def apply_together(runners: Sequence[ProjectionRunner], together: Callable[[], Any],
                   batch: Sequence[tuple[int, Any]]) -> bool:
    """Apply a batch this process has just committed to several views in one transaction
    (``together``: the views' store's together()): to each view, the part of the batch after
    its position. A view whose follower is behind the batch, or not running, is left to the
    follower (and woken). False, with nothing changed, when the batch has a gap or the
    transaction failed: then each view tries on its own. Raises the store's error, with nothing
    changed, when the database is away (OperationalError, InterfaceError): each view alone would
    only wait for a connection again, holding up the writer whose hook this is."""
    if not batch or not runners or not gapless(batch):
        return False
    fed = _apply_parts(runners, together, batch, lambda position: unapplied(position, batch), away=True)
    if fed is None:
        return False
    now = time.monotonic()
    for runner in fed:
        runner.applied_in_process += 1
        runner._fed_at = now
    for runner in runners:
        if runner not in fed and runner.position < batch[-1][0]:
            runner.poke()  # behind the batch, or not running: its follower reads the log
    return True


def _apply_parts(runners: Sequence[ProjectionRunner], together: Callable[[], Any],
                 batch: Sequence[tuple[int, Any]],
                 rest_of: Callable[[int], list[tuple[int, Any]] | None],
                 away: bool = False) -> list[ProjectionRunner] | None:
    """Apply a batch in one transaction: to each running view, ``rest_of`` its position (the part
    of the batch it lacks; None or nothing: the view takes no part). The runners given a part, or
    None, with nothing changed, when the transaction failed (``away``: raises instead when the
    database is away)."""
    last = batch[-1][0]
    with contextlib.ExitStack() as held:
        for runner in runners:  # always in the same order; a follower only ever holds its own
            held.enter_context(runner._applying)
        parts = []
        for runner in runners:
            rest = rest_of(runner._position) if runner.status == "running" else None
            if rest:
                parts.append((runner, rest))
        if parts:
            try:
                with together():
                    for runner, rest in parts:
                        runner.view.apply_batch(rest, Tracking(runner.view.name, last), after=runner._position)
            except Exception as error:  # noqa: BLE001 - rolled back as one; each view tries on its own next
                log.warning("applying a batch to the views together failed", exc_info=True)
                if away and isinstance(error, (OperationalError, InterfaceError)):
                    raise
                return None
        for runner, _ in parts:
            runner._moved_to(last)
    return [runner for runner, _ in parts]


class FollowerGroup:
    """One follower of the log for several views in one store: each batch is read and decoded
    once and applied to every view in one transaction, where a follower per view read the same
    events three times and committed three times (`tasks project` on SQLite, and the catch-up of
    `tasks serve` before it listens). A batch the views cannot take together is taken by each
    view alone, on its own read and transaction (``ProjectionRunner.attempt``), so that a failing
    view is reported (``failed``, its error), backs off and retries by itself while the others
    go on."""

    def __init__(self, runners: Sequence[ProjectionRunner], together: Callable[[], Any], *,
                 batch_size: int = 2000, poll_interval: float = 0.05, max_backoff: float = 5.0) -> None:
        self.runners = list(runners)
        self.together = together
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._retry: dict[int, tuple[float, float]] = {}  # a failed runner's id → (when to retry, back-off)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def catch_up(self) -> int:
        """Apply everything up to the log's head now, in this thread; returns events read."""
        for runner in self.runners:
            runner._position = runner.view.position()
            runner.status = "running"
        read = 0
        while (count := self.step()) > 0:
            read += count
        return read

    def step(self) -> int:
        """Read the batch after the view furthest behind, once, and apply it to every running view
        whose retry is due; a view that fails alone waits out its back-off. Returns the batch's size."""
        now = time.monotonic()
        due = [r for r in self.runners if self._retry.get(id(r), (0.0, 0.0))[0] <= now]
        running = [r for r in due if r.status == "running"]
        # the views already failed before this step; one that fails below waits out its back-off
        resting = [r for r in due if r.status != "running"]
        read = 0
        if running:
            try:
                batch = running[0].read(min(r.position for r in running), self.batch_size)
            except Exception:  # noqa: BLE001 - e.g. the database is away: each view reads, fails, backs off
                self._alone(running)
                batch = []
            if batch and _apply_parts(running, self.together, batch, _after(batch)) is None:
                self._alone(running)  # on its own read and transaction: a failing view holds back only itself
            read = len(batch)
        self._alone(resting)
        return read

    def _alone(self, runners: Sequence[ProjectionRunner]) -> None:
        for runner in runners:
            if runner.attempt() is None:
                _, backoff = self._retry.get(id(runner), (0.0, self.poll_interval / 2))
                backoff = min(backoff * 2, self.max_backoff)
                self._retry[id(runner)] = (time.monotonic() + backoff, backoff)
            else:
                self._retry.pop(id(runner), None)

    def start(self) -> None:
        for runner in self.runners:
            runner.status = "running"
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="projection-followers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for runner in self.runners:
            runner.status = "stopped"

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self.step() < self.batch_size:
                self._stopping.wait(self.poll_interval)


def _after(batch: Sequence[tuple[int, Any]]) -> Callable[[int], list[tuple[int, Any]]]:
    """The part of a batch read from the log that a view at a position lacks (a log may have gaps)."""
    return lambda position: [event for event in batch if event[0] > position]


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
