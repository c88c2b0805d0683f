"""Public task ids (``task_<32 hex>``) and the UUIDs the event store keys by."""

from __future__ import annotations

import os
import threading
from uuid import UUID

from domain.errors import TaskNotFoundError

PREFIX = "task_"
_IDS_PER_READ = 256


class _RandomBytes(threading.local):
    """Each thread's unread bytes from the OS's random source."""

    def __init__(self) -> None:
        self.buffer = b""
        self.offset = 0


_random = _RandomBytes()


def _forget_random_bytes() -> None:
    global _random
    _random = _RandomBytes()  # a forked child must never hand out its parent's ids


os.register_at_fork(after_in_child=_forget_random_bytes)


def new_id() -> UUID:
    """A random (version 4) UUID, as uuid.uuid4() makes, from the same source (os.urandom),
    read 256 ids at a time: each read is a system call that also hands the GIL to the event
    loop, once per create on the writer thread otherwise."""
    state = _random
    if state.offset >= len(state.buffer):
        state.buffer, state.offset = os.urandom(16 * _IDS_PER_READ), 0
    start = state.offset
    state.offset = start + 16
    return UUID(bytes=state.buffer[start : start + 16], version=4)


def public_id(task_uuid: UUID) -> str:
    return f"{PREFIX}{task_uuid.hex}"


def parse_id(task_id: str) -> UUID:
    """The UUID behind a public id; an id of the wrong shape is simply not found."""
    if not task_id.startswith(PREFIX) or len(task_id) != len(PREFIX) + 32:
        raise TaskNotFoundError(task_id)
    try:
        return UUID(hex=task_id[len(PREFIX):])
    except ValueError:
        raise TaskNotFoundError(task_id) from None
