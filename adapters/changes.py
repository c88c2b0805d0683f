"""Change counters shared by every process that opens one SQLite database.

A SQLite statement costs ~10 µs even when it reads nothing (the WAL read lock is
taken and dropped each time), and every request made two: its key, and for a GET of
a task, "any event after the cached version?". Both answers change rarely. Each
process now maps a small file beside the database (``<database>.changes``) into
memory; it holds one counter per kind of change, and a writer bumps the counter
after it commits such a change. A reader that remembers the counter's value from
before its last read of the database knows, by comparing with the value now —
a memory read, no system call — whether it must read again.

The order is what makes it safe: the reader takes the counter's value *before* it
reads the database, a writer bumps it *after* it commits. A change committed after
the reader's read bumps the counter past the value the reader kept, so its next
request reads again. A writer that dies between its commit and its bump leaves a
change unsignalled, so what is kept is also re-read after ``MAX_TRUST`` seconds.

Bumps are serialised (a lock between threads, an exclusive ``flock`` on the file
between processes), so no bump is lost. The file is only ever a cache's hint: deleting it loses nothing
(the next process creates it at zero, and readers treat any value they did not read
themselves as a change). PostgreSQL has no such file; its readers read every time.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

KEYS = 0  # an API key was added or revoked
EVENTS = 1  # events were appended to the log
_SLOTS = 8
_SIZE = 8 * _SLOTS
MAX_TRUST = 5.0  # seconds a reader trusts a value without reading again, whatever the counter says


class ChangeCounters:
    """The mapped counters of one SQLite database."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path + ".changes"
        self._thread_lock = threading.Lock()  # flock does not exclude threads sharing one descriptor
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with self._locked():
                if os.fstat(self._fd).st_size < _SIZE:
                    os.ftruncate(self._fd, _SIZE)
            self._map = mmap.mmap(self._fd, _SIZE)
        except BaseException:
            os.close(self._fd)
            raise

    def value(self, slot: int) -> int:
        """The counter now (an aligned 8-byte read of shared memory)."""
        return struct.unpack_from("<Q", self._map, slot * 8)[0]  # type: ignore[no-any-return]

    def bump(self, slot: int) -> None:
        """Signal a committed change of this kind to every process."""
        with self._locked():
            struct.pack_into("<Q", self._map, slot * 8, (self.value(slot) + 1) & 0xFFFF_FFFF_FFFF_FFFF)

    def close(self) -> None:
        try:
            self._map.close()
        finally:
            os.close(self._fd)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive among this process's threads and among the processes that map the file."""
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


def open_counters(database_path: str) -> ChangeCounters | None:
    """The database's counters; None where the file cannot be made (a read-only folder: a process
    that cannot write there cannot write the database either, so it has nothing to signal)."""
    try:
        return ChangeCounters(database_path)
    except OSError:
        return None
