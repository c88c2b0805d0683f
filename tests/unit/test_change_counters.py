"""The change counters beside a SQLite database: seen by every mapping, no bump lost."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

from adapters.changes import EVENTS, KEYS, ChangeCounters, open_counters


def _bump_many(path: str, slot: int, times: int) -> None:
    counters = ChangeCounters(path)
    for _ in range(times):
        counters.bump(slot)
    counters.close()


def test_a_bump_in_one_mapping_is_seen_by_another_at_once(tmp_path: Path) -> None:
    database = str(tmp_path / "tasks.sqlite")
    one, other = ChangeCounters(database), ChangeCounters(database)
    try:
        before = other.value(KEYS), other.value(EVENTS)
        one.bump(KEYS)
        assert (other.value(KEYS), other.value(EVENTS)) == (before[0] + 1, before[1])
    finally:
        one.close()
        other.close()


def test_concurrent_bumps_from_processes_and_threads_lose_none(tmp_path: Path) -> None:
    database = str(tmp_path / "tasks.sqlite")
    counters = ChangeCounters(database)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_bump_many, args=(database, EVENTS, 20000)) for _ in range(3)]
    threads = [threading.Thread(target=lambda: [counters.bump(EVENTS) for _ in range(20000)]) for _ in range(2)]
    for worker in (*processes, *threads):
        worker.start()
    for worker in (*processes, *threads):
        worker.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert counters.value(EVENTS) == 5 * 20000
    assert counters.value(KEYS) == 0
    counters.close()


def test_a_folder_that_cannot_hold_the_file_means_no_counters(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root writes anyway: make the path impossible instead
            assert open_counters(str(folder / "missing-dir" / "tasks.sqlite")) is None
        else:
            assert open_counters(str(folder / "tasks.sqlite")) is None
    finally:
        folder.chmod(0o700)
