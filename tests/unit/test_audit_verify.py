"""The pure checks of domain/audit.py on histories made by the real aggregate."""

from __future__ import annotations

import dataclasses

import msgspec

from domain import audit
from domain import commands as c
from domain.audit import Entry
from domain.hashing import event_hash
from domain.ids import public_id
from domain.task import Actor, Task

BY = Actor("key_unit", "req_unit")


def entries(progress_reports: int = 3, first_position: int = 1) -> list[Entry]:
    """A task created assigned, started and then reporting progress, as stored entries."""
    task = Task.create(c.CreateTask(task="t", agent_id="amy"), BY)
    task.start(c.StartTask(), BY)
    for n in range(progress_reports):
        task.report_progress(c.ReportProgress(progress=10 * (n + 1)), BY)
    return [Entry(position=first_position + i, task_id=public_id(e.originator_id), version=e.originator_version,
                  type=type(e).__name__, tenant=e.tenant, fields=msgspec.to_builtins(vars(e)))
            for i, e in enumerate(task.collect_events())]


def kinds(found: list[audit.Finding]) -> list[tuple[str, int | None]]:
    return [(f.kind, f.version) for f in found]


def renumber(entry: Entry, version: int) -> Entry:
    return dataclasses.replace(entry, version=version)


def test_a_whole_history_has_no_findings() -> None:
    assert audit.verify(entries()).ok


def test_a_deletion_hidden_by_renumbering_is_still_a_missing_version() -> None:
    log = entries()  # v1..v5
    tampered = [*log[:2], *(renumber(e, e.version - 1) for e in log[3:])]
    assert kinds(audit.verify_chains(tampered)) == [("reordered", 4), ("reordered", 5), ("missing", 3)]


def test_rows_moved_to_other_positions_are_reordering() -> None:
    log = entries()
    moved = [*log[:2], dataclasses.replace(log[2], position=4), dataclasses.replace(log[3], position=3),
             log[4]]
    assert kinds(audit.verify_chains(moved)) == [("reordered", 4)]


def test_a_replaced_event_with_a_recomputed_hash_breaks_the_next_link() -> None:
    log = entries()
    fields = {**log[3].fields, "progress": 99}  # type: ignore[dict-item]
    fields["hash"] = event_hash(log[3].type, fields)
    forged = [*log[:3], dataclasses.replace(log[3], fields=fields), *log[4:]]
    found = audit.verify_chains(forged)
    assert kinds(found) == [("broken_link", 5)]
    assert "v4 or v5 was replaced" in found[0].message


def test_an_unreadable_event_is_a_modified_one() -> None:
    log = entries()
    assert kinds(audit.verify_chains([*log[:2], dataclasses.replace(log[2], fields=None), *log[3:]])) == [
        ("modified", 3)]


def test_a_checkpoint_names_events_added_inside_its_range_and_truncation() -> None:
    log = entries(first_position=10)  # positions 10..14
    checkpoint = audit.make_checkpoint(log[:4], 13)
    assert audit.verify(log[:4], checkpoint).ok
    assert audit.verify(log, checkpoint).ok  # events after its position are not its business
    early = [*log[:4], dataclasses.replace(log[4], position=12)]
    assert kinds(audit.verify_checkpoint(early, checkpoint)) == [("added", 5)]
    assert kinds(audit.verify_checkpoint(log[:2], checkpoint)) == [("truncated", None), ("truncated", 3)]


def test_a_signed_checkpoint_that_was_edited_fails_its_signature() -> None:
    log = entries()
    signed = audit.make_checkpoint(log, 5, key=b"secret")
    assert audit.verify(log, signed, b"secret").ok
    edited = msgspec.structs.replace(signed, event_count=4)
    assert next(f.kind for f in audit.verify_checkpoint(log, edited, b"secret")) == "checkpoint"
