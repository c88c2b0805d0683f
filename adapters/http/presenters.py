"""From domain state and view rows to the API's response shapes."""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Hashable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

from adapters.http import schemas as s
from domain.ids import public_id
from domain.task import Task
from projections.task_list import TaskRow


@lru_cache(maxsize=4096)  # a page or an uncached GET asks for the same few agents' names
def agent_name(agent_id: str | None) -> str | None:
    """A display name for an agent id ("amy" → "Amy") until agents have profiles."""
    if not agent_id:
        return None
    return " ".join(part.capitalize() for part in agent_id.replace("_", "-").split("-") if part)


def human_duration(seconds: float) -> str:
    """'3.5 hours', '12 minutes', '40 seconds', '2 days' — the seed's style."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            amount = round(seconds / size, 1)
            text = f"{amount:g}"
            return f"{text} {unit}" + ("" if text == "1" else "s")
    whole = round(seconds)
    return f"{whole} second" + ("" if whole == 1 else "s")


def tracking_url(base_url: str, task_id: str) -> str:
    return f"{base_url.rstrip('/')}/agents/tasks/{task_id}"


def created(task: Task, base_url: str) -> s.CreatedTask:
    task_id = public_id(task.id)
    return s.CreatedTask(
        task_id=task_id,
        status=task.status.value,
        task=task.description,
        agent_id=task.agent_id,
        agent_name=agent_name(task.agent_id),
        team_id=task.team_id,
        priority=task.priority,
        deadline=task.deadline,
        estimated_completion=None,
        estimated_duration=None,
        deliverables=list(task.expected_deliverables),
        tracking_url=tracking_url(base_url, task_id),
        created_at=task.created_at,
        version=task.version,
    )


def task_view(task: Task, base_url: str) -> s.TaskView:
    task_id = public_id(task.id)
    ended = task.completed_at
    duration = (ended - task.started_at).total_seconds() if ended and task.started_at else None
    notes, feedback = task.notes, task.feedback
    return s.TaskView(
        task_id=task_id,
        status=task.status.value,
        task=task.description,
        agent_id=task.agent_id,
        agent_name=agent_name(task.agent_id),
        team_id=task.team_id,
        priority=task.priority,
        progress=task.progress,
        current_phase=task.phase,
        deadline=task.deadline,
        context=task.context,
        budget=task.budget,
        expected_deliverables=list(task.expected_deliverables),
        timeline=s.Timeline(
            created_at=task.created_at,
            assigned_at=task.assigned_at,
            started_at=task.started_at,
            completed_at=task.completed_at,
            failed_at=task.failed_at,
            cancelled_at=task.cancelled_at,
            updated_at=task.updated_at,
            duration=None if duration is None else human_duration(duration),
            duration_seconds=duration,
        ),
        result=task.result,
        deliverables=task.deliverables,
        quality=task.quality,
        error=task.error,
        attempt=task.attempt,
        notes=[s.Note(**note) for note in _snake(notes)] if notes else [],
        feedback=[s.Feedback(**item) for item in _snake(feedback)] if feedback else [],
        blocked_reason=task.blocked_reason,
        cancel_reason=task.cancel_reason,
        escalations=task.escalations,
        estimated_completion=None,
        estimated_duration=None,
        tracking_url=tracking_url(base_url, task_id),
        version=task.version,
    )


def summary(row: TaskRow, base_url: str) -> s.TaskSummary:
    return s.TaskSummary(
        task_id=row.task_id,
        status=row.status,
        task=row.task,
        agent_id=row.agent_id,
        agent_name=agent_name(row.agent_id),
        team_id=row.team_id,
        priority=row.priority,
        progress=row.progress,
        current_phase=row.phase,
        deadline=None if row.deadline is None else datetime.fromisoformat(row.deadline),
        created_at=datetime.fromisoformat(row.created_at),
        updated_at=datetime.fromisoformat(row.updated_at),
        attempt=row.attempt,
        version=row.version,
        tracking_url=tracking_url(base_url, row.task_id),
    )


class EncodedPage(s.Shape):
    """A TaskPage whose tasks are already JSON (the same bytes TaskPage would encode to)."""

    tasks: msgspec.Raw
    total: int
    limit: int
    offset: int
    has_more: bool
    next_cursor: str | None = None


_encoder = msgspec.json.Encoder()
_TRACKING_URL = b'"trackingUrl":"'


class SummaryCache:
    """Each listed row's summary, encoded once per (task, version), so that a page is a byte join
    rather than a struct build and an encode per row (those were most of a list request's CPU).

    An entry holds the JSON split where the request's base URL goes: the summary's last field is
    ``"trackingUrl":"<base>/agents/tasks/<id>"``, so ``head + base + tail`` is the exact JSON of
    ``summary(row, base)``. A summary is a function of the row, and a row of its task's version, so
    an entry is never stale. The entries hold at most ``max_bytes``, the oldest dropped first."""

    def __init__(self, max_bytes: int = 16 * 1_048_576) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._parts: dict[str, tuple[int, bytes, bytes]] = {}
        self._base: tuple[str, bytes] = ("", b"")
        self._lock = threading.Lock()  # pages are also presented on worker threads
        self._answers: dict[Hashable, tuple[int, Any]] = {}  # see held(): only on the event loop
        self._answers_position = 0
        self._answers_bytes = 0

    def __len__(self) -> int:
        return len(self._parts)

    def held(self, key: Hashable, position: int) -> Any:
        """An answer presented before (a page, stats), if the view is still at the position it was
        read at, else None: a view's rows are a function of its position, so an equal position
        means an equal answer."""
        found = self._answers.get(key)
        return found[1] if found is not None and found[0] == position else None

    def keep(self, key: Hashable, position: int, answer: Any, size: int = 0) -> None:
        """Hold an answer read at ``position`` (``size``: its bytes, roughly). Only answers of the
        newest position seen are kept (no older one can be asked for again): at most MAX_ANSWERS
        of them, and MAX_ANSWER_BYTES in all."""
        answers = self._answers
        if position > self._answers_position:
            self._answers_position = position
            answers.clear()
            self._answers_bytes = 0
        elif position < self._answers_position:
            return
        if len(answers) >= MAX_ANSWERS or self._answers_bytes + size > MAX_ANSWER_BYTES:
            answers.clear()
            self._answers_bytes = 0
        if size <= MAX_ANSWER_BYTES:
            answers[key] = (position, answer)
            self._answers_bytes += size

    def known(self, task_id: str, version: int) -> tuple[int, bytes, bytes] | None:
        """The entry of this version of the task's summary, if held (for TaskListView.page)."""
        entry = self._parts.get(task_id)
        return entry if entry is not None and entry[0] == version else None

    def tasks_json(self, rows: Sequence[TaskRow | tuple[int, bytes, bytes]], base_url: str) -> msgspec.Raw:
        """The JSON array of the rows' summaries: the bytes ``[summary(row, base_url) …]`` encodes to.
        A row may also be the entry ``known`` gave for it."""
        known = self._base
        if known[0] != base_url:  # one or two base URLs in practice: escape each once
            known = self._base = (base_url, _encoder.encode(base_url.rstrip("/"))[1:-1])
        base = known[1]
        found = self._parts
        out: list[bytes] = []
        for row in rows:
            if isinstance(row, tuple):
                entry = row
            else:
                held = found.get(row.task_id)
                entry = held if held is not None and held[0] == row.version else self._encode(row)
            out += (entry[1], base, entry[2], b",")
        if not out:
            return msgspec.Raw(b"[]")
        out[-1] = b"]"
        return msgspec.Raw(b"[" + b"".join(out))

    def _encode(self, row: TaskRow) -> tuple[int, bytes, bytes]:
        encoded = _encoder.encode(summary(row, ""))
        cut = encoded.rindex(_TRACKING_URL) + len(_TRACKING_URL)  # the last field; quotes in text are escaped
        entry = (row.version, encoded[:cut], encoded[cut:])
        size = len(encoded) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return entry
        with self._lock:
            parts = self._parts
            old = parts.pop(row.task_id, None)
            if old is not None:
                if old[0] > row.version:  # a slower reader of an older version: keep the newer
                    parts[row.task_id] = old
                    return entry
                self.bytes -= len(old[1]) + len(old[2]) + ENTRY_OVERHEAD
            while parts and self.bytes + size > self.max_bytes:
                oldest = next(iter(parts))
                dropped = parts.pop(oldest)
                self.bytes -= len(dropped[1]) + len(dropped[2]) + ENTRY_OVERHEAD
            parts[row.task_id] = entry
            self.bytes += size
        return entry


MAX_ANSWERS = 256  # answers kept for the view's current position (a page of 50 is ~25 KB)
MAX_ANSWER_BYTES = 8 * 1_048_576  # and their bytes (a page of 500 is ~250 KB)
# Per entry beyond its JSON: the task id it is keyed by (its own string once the row is gone,
# ~88 bytes), the dict's slot (~50), the tuple (64), the version (32 past 256) and the two bytes'
# headers (~70). ~315 measured with tracemalloc (tests/unit/test_summary_cache.py); 200 was short.
ENTRY_OVERHEAD = 330


def deliverables(task: Task) -> s.Deliverables:
    return s.Deliverables(
        task_id=public_id(task.id),
        deliverables=[_deliverable(item) for item in task.deliverables],
    )


def _deliverable(item: dict[str, Any]) -> s.DeliverableView:
    created_at = item.get("createdAt")
    return s.DeliverableView(
        type=item["type"],
        name=item["name"],
        url=item.get("url"),
        download_url=item.get("downloadUrl") or item.get("url"),
        size=item.get("size"),
        format=item.get("format") or mimetypes.guess_type(item["name"])[0],
        created_at=None if created_at is None else datetime.fromisoformat(created_at),
    )


def _snake(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"created_at" if k == "createdAt" else k: v for k, v in item.items()} for item in items]
