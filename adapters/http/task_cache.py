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

An entry keeps its view packed: raw deflate against a dictionary of views of made-up
tasks (their keys, nulls and statuses), with fixed Huffman codes, so that a view of ~900
bytes takes ~170 and a hit unpacks it in ~1 µs (no code tables to build) while a miss
packs it in ~4 µs from a compressor primed with the dictionary once. A miss costs
~25-30 µs more than a hit (its events read and replayed), so the same memory holding
nearly three times the views is worth far more than the packing (README: "The task
cache's views packed"). The tenant and agent strings are interned: one copy for all the
entries that share them.
"""

from __future__ import annotations

import sys
import zlib
from collections import OrderedDict
from datetime import datetime, timezone
from uuid import UUID

import msgspec

from adapters.http import schemas as s

# bytes an entry costs beyond its packed view: the record, its key, the dict's slot, the bytes' header, the
# numbers it holds (~250 measured with tracemalloc, interned strings shared: tests/unit/test_task_cache.py)
ENTRY_OVERHEAD = 280
_WINDOW_BITS = -12  # raw deflate (no header, no checksum) with a 4 KB window: a view and the dictionary's end


def _dictionary() -> bytes:
    """Views of made-up tasks in the API's shape, the commonest last (nearest, so cheapest to refer to):
    what every view repeats — its keys, nulls, statuses, today's timestamps, the tracking URL's path."""
    now = datetime.now(timezone.utc).replace(microsecond=123456)
    task_id = "task_0" + "1" * 31

    def view(status: str, agent: str | None, **fields: object) -> bytes:
        timeline = dict(created_at=now, assigned_at=now if agent else None, started_at=None,
                        completed_at=None, failed_at=None, cancelled_at=None, updated_at=now, duration=None,
                        duration_seconds=None)
        timeline.update(fields.pop("timeline", {}))  # type: ignore[call-overload]
        shape = dict(task_id=task_id, status=status, task="Summarise the weekly revenue report",
                     agent_id=agent, agent_name=agent and "Agent 1", team_id=None, priority="medium",
                     progress=0, current_phase=None, deadline=None, context={}, budget=None,
                     expected_deliverables=["summary"], timeline=s.Timeline(**timeline), result=None,
                     deliverables=[], quality=None, error=None, attempt=1, notes=[], feedback=[],
                     blocked_reason=None, cancel_reason=None, escalations=0, estimated_completion=None,
                     estimated_duration=None, tracking_url=f"http://localhost:8000/agents/tasks/{task_id}",
                     version=1)
        shape.update(fields)
        return msgspec.json.encode(s.TaskView(**shape))  # type: ignore[arg-type]

    return b"".join((
        view("completed", "agent-7", progress=100, current_phase="done",
             result={"summary": "", "url": "https://"}, deliverables=[{"type": "report", "url": "https://"}],
             quality={"score": 0.9},
             notes=[s.Note(text="", created_at=now, actor="key_")],
             feedback=[s.Feedback(rating=5, feedback="", issues=[], created_at=now, actor="key_")],
             timeline={"started_at": now, "completed_at": now, "duration": "1h 2m",
                       "duration_seconds": 3720.0},
             version=5),
        view("in_progress", "agent-3", team_id="team-", progress=40, current_phase="analysis",
             priority="high", deadline=now, budget={"maxCost": 10}, timeline={"started_at": now}, version=3),
        view("pending", None, priority="low"),
        view("assigned", "agent-1", priority="urgent"),
    ))[-3500:]  # what the 4 KB window still reaches from the start of a view


_DICTIONARY = _dictionary()
# level 1, memLevel 2, fixed Huffman codes: unpacking builds no tables. Each view is packed by a copy of
# this compressor, which has taken the dictionary in once (setting it afresh took twice as long).
_PRIMED = zlib.compressobj(1, zlib.DEFLATED, _WINDOW_BITS, 2, zlib.Z_FIXED, _DICTIONARY)


def pack(view: bytes) -> bytes:
    packer = _PRIMED.copy()
    return packer.compress(view) + packer.flush()


def unpack(packed: bytes) -> bytes:
    return zlib.decompressobj(_WINDOW_BITS, _DICTIONARY).decompress(packed)


class CachedTask(msgspec.Struct, gc=False):
    """A task's presented view at one version, and what decides who may see it.
    Untracked by the garbage collector (``gc=False``): it holds no containers, so no cycles."""

    version: int
    tenant: str
    agent_id: str | None
    base_url: str  # the view's trackingUrl is built from the request's base URL
    data: bytes  # the JSON view, packed (``view``)
    # SQLite: the events counter (adapters/changes.py) when the log last showed this version as
    # the newest, and until when that is trusted; while both hold, no read is needed
    checked: int | None = None
    trusted_until: float = 0.0

    @property
    def size(self) -> int:
        return len(self.data) + len(self.base_url) + ENTRY_OVERHEAD

    @property
    def view(self) -> bytes:
        """The task's JSON view, as the API sends it."""
        return unpack(self.data)


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
        """A new entry for a task's JSON view, packed (the packed bytes are a copy of their own: the
        bytes msgspec's encoder answers with keep its buffer's spare room, which the entry's size
        would not count). The tenant and agent strings are interned."""
        agent = agent_id and sys.intern(agent_id)
        return CachedTask(version, sys.intern(tenant), agent, base_url, pack(view))

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
