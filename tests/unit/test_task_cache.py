"""The task cache's bounds: memory, recency, and never an older state over a newer one."""

from __future__ import annotations

import gc
from uuid import uuid4

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from adapters.http import presenters as p
from adapters.http.task_cache import ENTRY_OVERHEAD, CachedTask, TaskViewCache, pack, unpack
from domain.commands import CreateTask
from domain.task import Actor, Task
from tests.memory import assert_counted, held_while


def entry(version: int, size: int = 100) -> CachedTask:
    return CachedTask(version, "default", None, "http://h/", b"x" * size)


def test_the_cache_never_holds_more_bytes_than_its_bound_and_drops_the_least_recent() -> None:
    one = entry(1).size
    cache = TaskViewCache(max_bytes=3 * one)
    ids = [uuid4() for _ in range(4)]
    for task_id in ids[:3]:
        cache.put(task_id, entry(1))
    assert cache.get(ids[0]) is not None  # now the most recent
    cache.put(ids[3], entry(1))
    assert cache.bytes <= cache.max_bytes and len(cache) == 3
    assert cache.get(ids[1]) is None  # the least recently used went first
    assert all(cache.get(task_id) is not None for task_id in (ids[0], ids[2], ids[3]))


def test_an_entry_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = TaskViewCache(max_bytes=ENTRY_OVERHEAD + 10)
    task_id = uuid4()
    cache.put(task_id, entry(1, size=1000))
    assert cache.get(task_id) is None and cache.bytes == 0


def test_a_slower_load_of_an_older_version_does_not_replace_a_newer_one() -> None:
    cache = TaskViewCache(max_bytes=1_000_000)
    task_id = uuid4()
    cache.put(task_id, entry(3))
    cache.put(task_id, entry(2))
    found = cache.get(task_id)
    assert found is not None and found.version == 3
    cache.put(task_id, entry(4, size=50))
    found = cache.get(task_id)
    assert found is not None and found.version == 4 and cache.bytes == entry(4, size=50).size


def test_cached_entries_are_invisible_to_the_garbage_collector() -> None:
    # A full cache swaps an old entry for a new one on every miss; tracked entries piled up in
    # the collector's young generation and were walked all at once (a stop of the event loop).
    cache = TaskViewCache(max_bytes=1_000_000)
    task_id = uuid4()
    cache.put(task_id, entry(1))
    found = cache.get(task_id)
    assert found is not None and not gc.is_tracked(found)
    assert not any(gc.is_tracked(key) for key in cache._entries)  # nor are the keys it holds


def test_a_full_cache_holds_no_more_memory_than_it_accounts_for() -> None:
    # TASKS_TASK_CACHE_MB is a bound on memory only if an entry's allowance covers what it holds
    by = Actor(principal="key_0123456789abcdef", request_id="req_test")
    tasks = [Task.create(CreateTask(task=f"Analyze Q4 revenue trends for region {n}",
                                    agent_id=f"agent-{n % 50}", priority="high",
                                    context={"quarter": "Q4", "region": n},
                                    deliverables=["summary", "chart"]), by) for n in range(5000)]
    cache = TaskViewCache(max_bytes=1_048_576)

    def fill() -> None:
        for task in tasks:  # strings of its own for each entry (join builds new ones), as a replayed task has
            view = msgspec.json.encode(p.task_view(task, "http://127.0.0.1:8000/"))
            cache.put(task.id, cache.entry(task.version, "".join(task.tenant), "".join(task.agent_id or ""),
                                           "http://127.0.0.1:8000/", view))

    assert_counted(cache, held_while(fill))


@given(st.binary(max_size=20_000) | st.text(max_size=20_000).map(str.encode))
def test_a_packed_view_unpacks_to_the_same_bytes(view: bytes) -> None:
    # larger than the 4 KB window too: the dictionary only helps; any bytes come back whole
    assert unpack(pack(view)) == view


def test_an_entry_keeps_a_typical_view_in_a_fraction_of_its_json() -> None:
    # what lets 64 MB hold ~140,000 tasks rather than ~50,000 (README: "The task cache's views packed")
    by = Actor(principal="key_0123456789abcdef", request_id="req_test")
    command = CreateTask(task="Benchmark task 49990: summarise the weekly revenue report",
                         agent_id="agent-40", priority="high", context={"source": "bench", "n": 49990},
                         deliverables=["summary"])
    task = Task.create(command, by)
    view = msgspec.json.encode(p.task_view(task, "http://127.0.0.1:8000/"))
    kept = TaskViewCache(max_bytes=1_048_576).entry(task.version, task.tenant, task.agent_id,
                                                    "http://127.0.0.1:8000/", view)
    assert kept.view == view
    assert len(kept.data) * 4 < len(view) and kept.size < 600
