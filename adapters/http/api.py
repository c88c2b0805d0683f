"""Endpoints of the REST surface and the table of operations they come from."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.http import presenters as p
from adapters.http import schemas as s
from adapters import read_models
from adapters.http.errors import ApiError, request_id
from adapters.http.exports import csv_response, parse_query, wants_csv
from adapters.keys import Principal
from adapters.services import Services
from domain import commands as c
from domain.application import Written
from domain.task import Actor, Task
from projections.queries import ListTasksQuery

_encoder = msgspec.json.Encoder()
_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')


# Who may call what (the README's role matrix). Agents act on the agent side
# of the lifecycle; clients ask for work and judge it; auditors and analysts read.
ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "client", "agent", "auditor", "analyst"})
TASK_READERS = frozenset({"admin", "client", "agent", "auditor"})
REQUESTERS = frozenset({"admin", "client"})
WORKERS = frozenset({"admin", "agent"})
EVERYONE = frozenset({"public"})


@dataclass(frozen=True)
class Operation:
    """One endpoint: its route, its input and output shapes, and who may call it."""

    method: str
    path: str
    name: str
    summary: str
    endpoint: Callable[[Request], Any]
    response: Any
    status: int = 200
    body: type | None = None
    query: type | None = None
    tag: str = "tasks"
    roles: frozenset[str] = ADMIN


# --- request plumbing --------------------------------------------------------


def services(request: Request) -> Services:
    return request.state.services  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    return request.user.principal  # type: ignore[no-any-return]


def actor(request: Request) -> Actor:
    who = principal(request)
    return Actor(principal=who.key_id, request_id=request_id(request), tenant=who.tenant)


async def read_body(request: Request, command_type: type[Any]) -> Any:
    """The body decoded into its command: 413 when too large, 415 when not JSON."""
    limit = services(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes", {"limit": limit})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes", {"limit": limit})
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        body = b"{}"
    else:
        media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(415, "unsupported_media_type", "send the body as application/json",
                           {"contentType": media})
    return msgspec.json.decode(body, type=command_type)


def expected_version(request: Request) -> int | None:
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise ApiError(400, "invalid_header", 'If-Match must be a task version such as "3"',
                       {"field": "If-Match", "in": "header"})
    return int(match.group(1))


def _matches(header: str | None, version: int) -> bool:
    """Whether an If-None-Match list ("*", "3", W/"3", …) names this version."""
    if header is None:
        return False
    tags = [tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")]
    return "*" in tags or str(version) in tags


def envelope(request: Request, data: Any, status: int = 200, position: int | None = None,
             headers: dict[str, str] | None = None) -> Response:
    body = s.Envelope(
        success=True,
        data=data,
        metadata=s.Metadata(request_id=request_id(request), timestamp=datetime.now(timezone.utc),
                            position=position),
    )
    return Response(_encoder.encode(body), status, headers=headers, media_type="application/json")


def etag(task: Task) -> dict[str, str]:
    return {"ETag": f'"{task.version}"'}


def base_url(request: Request) -> str:
    return str(request.base_url)


# --- endpoints -------------------------------------------------------------------


async def create_task(request: Request) -> Response:
    command = await read_body(request, c.CreateTask)
    svc = services(request)
    written: Written = await run_in_threadpool(svc.app.create_task, command, actor(request))
    await run_in_threadpool(svc.written, written.position)
    data = p.created(written.task, base_url(request))
    headers = {**etag(written.task), "Location": data.tracking_url}
    return envelope(request, data, 201, written.position, headers)


async def get_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    task = await run_in_threadpool(services(request).app.get_task, task_id, principal(request).tenant)
    if _matches(request.headers.get("if-none-match"), task.version):
        return Response(status_code=304, headers=etag(task))
    return envelope(request, p.task_view(task, base_url(request)), headers=etag(task))


async def list_tasks(request: Request) -> Response:
    query = parse_query(request, ListTasksQuery)
    if query.cursor is not None and query.offset:
        raise ApiError(422, "validation_error", "give either cursor or offset, not both",
                       {"field": "$.offset", "in": "query"})
    svc = services(request)
    view = svc.list_view
    await run_in_threadpool(read_models.wait_for, svc, view, query.min_position)
    rows, total, position, next_cursor = await run_in_threadpool(view.page, principal(request).tenant, query)
    headers = {"X-Projection-Position": str(position), "X-Total-Count": str(total)}
    base = base_url(request)
    tasks = [p.summary(row, base) for row in rows]
    if wants_csv(request):
        if next_cursor:
            headers["X-Next-Cursor"] = next_cursor
        fields = list(s.TaskSummary.__struct_encode_fields__)
        return csv_response(fields, ([_csv_value(getattr(t, f)) for f in s.TaskSummary.__struct_fields__]
                                     for t in tasks), headers)
    page = s.TaskPage(
        tasks=tasks,
        total=total,
        limit=query.limit,
        offset=query.offset,
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )
    return envelope(request, page, headers=headers)


def _csv_value(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


async def get_deliverables(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    task = await run_in_threadpool(services(request).app.get_task, task_id, principal(request).tenant)
    if task.status.value != "completed":
        raise ApiError(409, "invalid_transition",
                       f"deliverables are available once the task is completed; it is {task.status.value}",
                       {"status": task.status.value, "allowedStatuses": ["completed"]})
    return envelope(request, p.deliverables(task), headers=etag(task))


def command_endpoint(command_type: type[Any], method: Callable[[Task, Any, Actor], None]) -> Callable[[Request], Any]:
    """An endpoint that decodes one command and applies it to one task."""

    async def endpoint(request: Request) -> Response:
        command = await read_body(request, command_type)
        by = actor(request)
        svc = services(request)
        written: Written = await run_in_threadpool(
            svc.app.execute,
            request.path_params["task_id"],
            by,
            lambda task: method(task, command, by),
            expected_version(request),
        )
        await run_in_threadpool(svc.written, written.position)
        return envelope(request, p.task_view(written.task, base_url(request)), 200, written.position,
                        etag(written.task))

    return endpoint


async def healthz(request: Request) -> Response:
    return envelope(request, s.Health(status="ok"))


COMMANDS: tuple[tuple[str, type[Any], Callable[[Task, Any, Actor], None], frozenset[str], str], ...] = (
    ("cancel", c.CancelTask, Task.cancel, REQUESTERS, "Cancel a task that has not ended"),
    ("retry", c.RetryTask, Task.retry, REQUESTERS, "Retry a failed task"),
    ("feedback", c.GiveFeedback, Task.give_feedback, REQUESTERS, "Give feedback on a completed task"),
    ("escalate", c.EscalateTask, Task.escalate, REQUESTERS, "Raise the priority, maybe hand the task on"),
    ("assign", c.AssignTask, Task.assign, REQUESTERS, "Assign the task to an agent"),
    ("request-changes", c.RequestChanges, Task.request_changes, REQUESTERS, "Send the work back from review"),
    ("start", c.StartTask, Task.start, WORKERS, "The agent starts work"),
    ("progress", c.ReportProgress, Task.report_progress, WORKERS, "Report progress (0-100)"),
    ("block", c.BlockTask, Task.block, WORKERS, "Mark the task blocked on something external"),
    ("unblock", c.UnblockTask, Task.unblock, WORKERS, "Resume a blocked task"),
    ("review", c.SubmitForReview, Task.submit_for_review, WORKERS, "Submit the work for review"),
    ("complete", c.CompleteTask, Task.complete, WORKERS, "Complete the task with its result and deliverables"),
    ("fail", c.FailTask, Task.fail, WORKERS, "Record that the task failed"),
)


def operations() -> list[Operation]:
    base = "/agents/tasks"
    ops = [
        Operation("GET", "/healthz", "healthz", "Liveness", healthz, s.Envelope[s.Health], tag="service",
                  roles=EVERYONE),
        Operation("POST", base, "create_task", "Create a task", create_task, s.Envelope[s.CreatedTask], 201,
                  body=c.CreateTask, roles=REQUESTERS),
        Operation("GET", base, "list_tasks", "List tasks with filters", list_tasks, s.Envelope[s.TaskPage],
                  query=ListTasksQuery, roles=READERS),
        Operation("GET", base + "/{task_id}", "get_task", "Get a task's status", get_task, s.Envelope[s.TaskView],
                  roles=TASK_READERS),
        Operation("PATCH", base + "/{task_id}", "update_task", "Update priority, deadline, context or notes",
                  command_endpoint(c.UpdateTask, Task.update), s.Envelope[s.TaskView], body=c.UpdateTask,
                  roles=REQUESTERS),
        Operation("GET", base + "/{task_id}/deliverables", "get_deliverables", "Deliverables of a completed task",
                  get_deliverables, s.Envelope[s.Deliverables], roles=TASK_READERS),
    ]
    for action, command_type, method, roles, summary in COMMANDS:
        ops.append(Operation("POST", f"{base}/{{task_id}}/{action}", action.replace("-", "_") + "_task", summary,
                             command_endpoint(command_type, method), s.Envelope[s.TaskView], body=command_type,
                             roles=roles))
    return ops


def routes(ops: list[Operation]) -> list[Route]:
    """One route per path, so that a 405 names every method the path allows."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in ops:
        by_path.setdefault(op.path, {})[op.method] = op
    return [Route(path, _by_method(methods), methods=list(methods)) for path, methods in by_path.items()]


def _by_method(methods: dict[str, Operation]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        op = methods["GET" if request.method == "HEAD" else request.method]
        if "public" not in op.roles:
            role = principal(request).role
            if role not in op.roles:
                raise ApiError(403, "forbidden", f"a key with role {role} may not {op.summary.lower()}",
                               {"role": role, "allowedRoles": sorted(op.roles)})
        return await op.endpoint(request)  # type: ignore[no-any-return]

    return endpoint
