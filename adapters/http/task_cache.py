"""A bounded cache of presented tasks, so that a GET replays a task only when it changed.

An entry is the task's JSON view as the API sends it (``data`` of the envelope),
with the version it was presented at and who may see it. It is served only when
that version is still the task's newest in the event log (one indexed lookup per
request, skipped on SQLite while the database's events counter has not moved since
the last lookup), so a write by any process — this one or another — is seen by the
next GET. Events are never changed once stored, so "same newest version" means "same
task". Memory is bounded by the encoded size of the entries (plus a fixed
allowance per entry); the least recently used entries go first.

Nothing the cache holds is tracked by Python's garbage collector: an entry is a
``gc=False`` struct of strings, bytes and numbers, keyed by the task id's integer. A
full cache replaces an old entry with a new one on almost every miss, and freeing
the old one lowers the collector's young-generation count as much as allocating the
new one raised it, so tracked entries piled up in the young generation, uncounted,
until some other allocation set off a collection: at 1M tasks ~65,000 entries and
their UUID keys were walked in one go, a 10-60 ms stop of the event loop every few
seconds — the GET's p99 at 1M tasks (README: "GET p99 at 1M tasks").
"""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

import msgspec

# bytes an entry costs beyond its JSON: the record, its key, the dict's slot, the bytes' header, the tenant's
# and agent's strings, the allocator's share (~400 measured with tracemalloc: tests/unit/test_task_cache.py)
ENTRY_OVERHEAD = 420


class CachedTask(msgspec.Struct, gc=False):
    """A task's presented view at one version, and what decides who may see it.
    Untracked by the garbage collector (``gc=False``): it holds no containers, so no cycles."""

    version: int
    tenant: str
    agent_id: str | None
    base_url: str  # the view's trackingUrl is built from the request's base URL
    data: bytes
    # SQLite: the events counter (adapters/changes.py) when the log last showed this version as
    # the newest, and until when that is trusted; while both hold, no read is needed
    checked: int | None = None
    trusted_until: float = 0.0

    @property
    def size(self) -> int:
        return len(self.data) + len(self.base_url) + ENTRY_OVERHEAD


class TaskViewCache:
    """LRU of CachedTask by task id, at most ``max_bytes`` in all; used from the event loop only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0  # GETs answered from an entry that was still current
        self.misses = 0  # GETs that replayed the task
        self._entries: OrderedDict[int, CachedTask] = OrderedDict()  # by UUID.int: ints are not tracked

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, version: int, tenant: str, agent_id: str | None, base_url: str,
              view: bytes) -> CachedTask:
        """A new entry for a task's JSON view. The view is copied: the bytes msgspec's encoder
        answers with keep its buffer's spare room (~120 bytes on a view of ~900), which the
        entry's size would not count."""
        return CachedTask(version, tenant, agent_id, base_url, bytes(memoryview(view)))

    def get(self, task_id: UUID) -> CachedTask | None:
        """The entry, whatever its version (the caller checks it against the log)."""
        key = task_id.int
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, task_id: UUID, entry: CachedTask) -> None:
        key = task_id.int
        old = self._entries.pop(key, None)
        if old is not None:
            if old.version > entry.version:  # a slower load of an older state lost the race
                self._entries[key] = old
                return
            self.bytes -= old.size
        if entry.size > self.max_bytes:
            return
        self._entries[key] = entry
        self.bytes += entry.size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
