"""Task ids: time-ordered (UUID version 7), unique, and what the API shows and parses."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from domain.errors import TaskNotFoundError
from domain.ids import new_id, parse_id, public_id


def test_an_id_is_a_version_7_uuid_carrying_the_time_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7 and made.variant == "specified in RFC 4122"
    assert before <= made.int >> 80 <= after  # its first 48 bits: Unix milliseconds


def test_ids_made_later_sort_after_earlier_ones_and_never_repeat() -> None:
    earlier = [new_id() for _ in range(1_000)]
    time.sleep(0.002)  # the next millisecond at least
    later = [new_id() for _ in range(1_000)]
    assert min(later) > max(earlier)  # new tasks land together at the end of every index keyed by id
    assert len(set(earlier + later)) == 2_000


def test_the_random_part_is_not_a_counter() -> None:
    # 74 random bits per id: ids made in the same millisecond share no guessable sequence.
    made = [new_id().int & ((1 << 62) - 1) for _ in range(200)]
    assert len(set(made)) == 200
    assert sorted(made) != made


def test_public_ids_round_trip_and_older_random_ids_still_parse() -> None:
    made = new_id()
    assert parse_id(public_id(made)) == made
    legacy = UUID("9f1c2a4e-8b7d-4c3e-a1f0-123456789abc")  # a version 4 id from before
    assert parse_id(public_id(legacy)) == legacy
    assert parse_id(public_id(legacy).upper().replace("TASK_", "task_")) == legacy  # hex in either case
    for made in (new_id(), parse_id(public_id(legacy))):  # as UUID(int=…) makes them
        assert made == UUID(int=made.int) and hash(made) == hash(UUID(int=made.int)) and made.version in (4, 7)
        assert made.is_safe is UUID(int=made.int).is_safe and str(made) == str(UUID(int=made.int))


@pytest.mark.parametrize("text", ["task_", "task_xyz", "tsk_" + "0" * 32, "task_" + "g" * 32, "task_" + "0" * 33,
                                  # 32 characters that int(…, 16) would read, but not 32 hex digits
                                  "task_" + "0" * 30 + "_1", "task_+" + "0" * 31, "task_ " + "0" * 31])
def test_an_id_of_the_wrong_shape_is_not_found(text: str) -> None:
    with pytest.raises(TaskNotFoundError):
        parse_id(text)
