"""The list's summary cache: the same JSON as encoding the summaries, fresh per version, bounded."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
from hypothesis import given, strategies as st

from adapters.http.presenters import ENTRY_OVERHEAD, MAX_ANSWER_BYTES, SummaryCache, summary
from projections.task_list import TaskRow, sortable_time
from tests.memory import assert_counted, held_while

times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=st.just(timezone.utc)).map(sortable_time)
texts = st.text(min_size=1, max_size=40)
ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12).map(lambda s: f"task_{s}")
rows = st.builds(
    TaskRow, task_id=ids, tenant=st.just("default"), task=texts,
    status=st.sampled_from(["pending", "assigned", "completed"]),
    agent_id=st.none() | st.sampled_from(["amy", "bob_smith-jr", "x"]), team_id=st.none() | texts,
    priority=st.sampled_from(["low", "urgent"]), priority_rank=st.integers(0, 3), progress=st.integers(0, 100),
    phase=st.none() | texts, deadline=st.none() | times, created_at=times, updated_at=times,
    version=st.integers(1, 50), attempt=st.integers(1, 5), created_position=st.integers(1, 10**9),
    position=st.integers(1, 10**9),
)
bases = st.sampled_from(["http://testserver/", "https://tasks.example.com/api/", "http://h:8000/a%22b/",
                         'http://h/"quoted"\\/'])


@given(st.lists(rows, max_size=5, unique_by=lambda r: r.task_id), bases, bases)
def test_a_page_is_the_json_of_its_summaries_for_any_row_and_base_url(page: list[TaskRow], base: str,
                                                                      other: str) -> None:
    cache = SummaryCache()
    for url in (base, other, base):  # encoded, then from the cache, with either base URL
        assert bytes(cache.tasks_json(page, url)) == msgspec.json.encode([summary(row, url) for row in page])


def test_a_new_version_of_a_row_is_encoded_again() -> None:
    row = TaskRow("task_1", "default", "write", "pending", None, None, "low", 0, 0, None, None,
                  "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z", 1, 1, 1, 1)
    cache = SummaryCache()
    cache.tasks_json([row], "http://h/")
    row.status, row.version = "assigned", 2
    assert b'"status":"assigned"' in bytes(cache.tasks_json([row], "http://h/"))


def test_the_cache_keeps_at_most_its_bound_dropping_the_oldest_first() -> None:
    def row(n: int) -> TaskRow:
        return TaskRow(f"task_{n}", "default", "write", "pending", None, None, "low", 0, 0, None, None,
                       "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z", 1, 1, n, n)

    one = len(msgspec.json.encode(summary(row(1), ""))) + ENTRY_OVERHEAD
    cache = SummaryCache(max_bytes=3 * one)
    for n in range(1, 6):
        cache.tasks_json([row(n)], "http://h/")
        assert cache.bytes <= cache.max_bytes
    assert len(cache) == 3 and set(cache._parts) == {"task_3", "task_4", "task_5"}


def test_answers_are_kept_for_the_newest_position_only_and_within_their_bytes() -> None:
    cache = SummaryCache()
    cache.keep("a", 5, "page a at 5", 10)
    assert cache.held("a", 5) == "page a at 5" and cache.held("a", 6) is None
    cache.keep("b", 4, "page b at 4", 10)  # an older position than one already seen: not kept
    assert cache.held("b", 4) is None
    cache.keep("b", 6, "page b at 6", 10)  # a newer position: what was read before it goes
    assert cache.held("a", 5) is None and cache.held("b", 6) == "page b at 6"
    half = MAX_ANSWER_BYTES // 2 + 1
    cache.keep("c", 6, "big c", half)
    cache.keep("d", 6, "big d", half)  # over the bytes: the others go first
    assert cache.held("c", 6) is None and cache.held("b", 6) is None and cache.held("d", 6) == "big d"
    cache.keep("e", 6, "too big", MAX_ANSWER_BYTES + 1)
    assert cache.held("e", 6) is None


def test_a_full_cache_holds_no_more_memory_than_it_accounts_for() -> None:
    """Each entry's strings are its own (the task id too: in the server the row it came from is
    gone after the request, so the cache's key is the only reference), as the list's rows are."""
    made = [(f"task_{n:032x}", f"Summarise the weekly revenue report {n}", f"agent-{n % 50}", n)
            for n in range(6000)]
    cache = SummaryCache(max_bytes=1_048_576)

    def fill() -> None:
        for task_id, text, agent, n in made:
            row = TaskRow("".join(task_id), "default", "".join(text), "assigned", "".join(agent), None,
                          "high", 2, n % 100, None, None, "2026-11-26T10:00:00.000000Z",
                          "2026-11-26T10:00:01.000000Z", 1000 + n, 1, n, n)
            cache.tasks_json([row], "http://127.0.0.1:8000/")

    assert_counted(cache, held_while(fill))
