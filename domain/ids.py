"""Public task ids (``task_<32 hex>``) and the UUIDs the event store keys by."""

from __future__ import annotations

import os
import re
import threading
import time
from uuid import UUID, SafeUUID

from domain.errors import TaskNotFoundError

PREFIX = "task_"
_IDS_PER_READ = 256
_RANDOM_BYTES = 10  # 80 bits read per id; 74 of them are used
_MS_MASK = (1 << 48) - 1
_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B = (1 << 62) - 1
_PUBLIC_ID = re.compile(PREFIX + "[0-9a-fA-F]{32}")


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
    """A time-ordered UUID (version 7, RFC 9562): the Unix time in milliseconds, then 74 bits
    from the OS's random source (os.urandom, as uuid.uuid4() uses).

    Why time-ordered: a task's id keys the event store's (originator_id, version) index and
    the views' task_id indexes. Random ids put each new task on a random leaf page of each
    of them, so every create dirtied three pages of its own, over half of the ~8 pages a
    create wrote to SQLite's WAL at 300k tasks (README: "What a create writes"). Ids that grow
    with time land together at the right edge, a few pages for a whole batch. The id tells
    when the task was created, which its createdAt says anyway; 74 random bits keep ids
    unguessable, and ids are never the access check (keys and tenants are).

    Random bytes are read 256 ids at a time: each read is a system call that also hands the
    GIL to the event loop, once per create on the writer thread otherwise."""
    state = _random
    if state.offset >= len(state.buffer):
        state.buffer, state.offset = os.urandom(_RANDOM_BYTES * _IDS_PER_READ), 0
    start = state.offset
    state.offset = start + _RANDOM_BYTES
    bits = int.from_bytes(state.buffer[start : start + _RANDOM_BYTES], "big")
    rand_a, rand_b = bits >> 68, bits & _RAND_B  # 12 and 62 bits
    millis = time.time_ns() // 1_000_000 & _MS_MASK
    return _uuid(millis << 80 | _VERSION_7 | rand_a << 64 | _VARIANT | rand_b)


def _uuid(value: int) -> UUID:
    """``UUID(int=value)`` for a value known to fit in 128 bits: the two slots its __init__ sets,
    without the argument checks of that Python-level __init__ (~1 µs, once per create and per
    GET of an uncached task)."""
    made = object.__new__(UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", SafeUUID.unknown)
    return made


def public_id(task_uuid: UUID) -> str:
    return f"{PREFIX}{task_uuid.hex}"


def parse_id(task_id: str) -> UUID:
    """The UUID behind a public id (the prefix, then 32 hex digits); an id of any other shape is
    simply not found."""
    if _PUBLIC_ID.fullmatch(task_id) is None:
        raise TaskNotFoundError(task_id)
    return _uuid(int(task_id[len(PREFIX):], 16))
