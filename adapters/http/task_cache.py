"""A bounded cache of presented tasks, so that a GET replays a task only when it changed.

An entry is the task's JSON view as the API sends it (``data`` of the envelope),
with the version it was presented at and who may see it. It is served only when
that version is still the task's newest in the event log (one indexed lookup per
request), so a write by any process — this one or another — is seen by the next
GET. Events are never changed once stored, so "same newest version" means "same
task". Memory is bounded by the encoded size of the entries (plus a fixed
allowance per entry); the least recently used entries go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

ENTRY_OVERHEAD = 400  # bytes an entry costs beyond its JSON: key, record, dict slot (measured: ~350)


@dataclass(frozen=True, slots=True)
class CachedTask:
    """A task's presented view at one version, and what decides who may see it."""

    version: int
    tenant: str
    agent_id: str | None
    base_url: str  # the view's trackingUrl is built from the request's base URL
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data) + len(self.base_url) + ENTRY_OVERHEAD


class TaskViewCache:
    """LRU of CachedTask by task id, at most ``max_bytes`` in all; used from the event loop only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[UUID, CachedTask] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, task_id: UUID, version: int, base_url: str) -> CachedTask | None:
        """The entry if it is of this version and base URL, else None (a miss)."""
        entry = self._entries.get(task_id)
        if entry is None or entry.version != version or entry.base_url != base_url:
            self.misses += 1
            return None
        self._entries.move_to_end(task_id)
        self.hits += 1
        return entry

    def put(self, task_id: UUID, entry: CachedTask) -> None:
        old = self._entries.pop(task_id, None)
        if old is not None:
            if old.version > entry.version:  # a slower load of an older state lost the race
                self._entries[task_id] = old
                return
            self.bytes -= old.size
        if entry.size > self.max_bytes:
            return
        self._entries[task_id] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
