"""Endpoints of the REST surface and the table of operations they come from."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.http import as_of
from adapters.http import idempotency
from adapters.http import presenters as p
from adapters.http import schemas as s
from adapters.http import task_read
from adapters.http.wire import JsonBytes, header
from adapters import read_models
from adapters.http.errors import ApiError, request_id, validation_details
from adapters.http.exports import csv_response, parse_query, wants_csv
from adapters.http.limits import check_free_form, within_free_form_limits
from adapters.http.middleware import UNCONFIRMED_KEY
from adapters.keys import Principal
from adapters.services import Services
from domain import commands as c
from domain.application import Job, Written
from domain.errors import TaskNotFoundError
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
    through_writer: bool = False  # its only effect is a job of the group-commit writer (pipeline.py)


# --- request plumbing --------------------------------------------------------


def services(request: Request) -> Services:
    return request.scope["state"]["services"]  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    return request.user.principal  # type: ignore[no-any-return]


def actor(request: Request) -> Actor:
    who = principal(request)
    return Actor(principal=who.key_id, request_id=request_id(request), tenant=who.tenant)


def visible(request: Request, task: Task) -> Task:
    """The task, if the caller may see it: an agent key sees only its own agent's tasks,
    and any other task is as missing to it as another tenant's (404)."""
    only = principal(request).only_agent
    if only is not None and task.agent_id != only:
        raise TaskNotFoundError(request.path_params["task_id"])
    return task


async def raw_body(request: Request) -> bytes:
    """The body's bytes, read once (413 when over the limit)."""
    state = request.scope["state"]
    cached: bytes | None = state.get("raw_body")
    if cached is not None:
        return cached
    limit = state["services"].settings.max_body_bytes
    declared = header(request.scope, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes", {"limit": limit})
    chunks, size = [], 0
    while True:  # the ASGI messages themselves: Request.stream()'s generator costs more than the read
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes", {"limit": limit})
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    state["raw_body"] = body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body


async def read_body(request: Request, command_type: type[Any]) -> Any:
    """The body decoded into its command: 413 when too large, 415 when not JSON, 422 when invalid."""
    body = await raw_body(request)
    if not body.strip():
        body = b"{}"
    else:
        media = (header(request.scope, b"content-type") or "application/json").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(415, "unsupported_media_type", "send the body as application/json",
                           {"contentType": media})
    try:
        command = msgspec.json.decode(body, type=command_type)
    except RecursionError:
        raise ApiError(422, "validation_error", "body is nested too deeply",
                       {"field": "$", "in": "body", "reason": "nested too deeply"}) from None
    settings = services(request).settings
    if not within_free_form_limits(body, settings.max_json_depth, settings.max_json_bytes):
        check_free_form(command, settings.max_json_depth, settings.max_json_bytes)
    return command


read_query = parse_query  # every query string is read the same strict way


def expected_version(request: Request) -> int | None:
    value = header(request.scope, b"if-match")
    if value is None or value.strip() == "*":
        return None
    match = _IF_MATCH.match(value)
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
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    return JsonBytes(_encoder.encode(body), raw, status)


def etag(task: Task) -> dict[str, str]:
    return {"ETag": f'"{task.version}"'}


base_url = task_read.base_url  # str(request.base_url), built once per host


async def run_job(request: Request, job: Job) -> Written:
    """Run a command through the process's group-commit writer, then wait (bounded)
    until this process's projections have applied it: read-your-writes."""
    svc = services(request)
    if svc.writer is not None:
        outcome = await svc.writer.submit(job)
    else:
        outcome = (await run_in_threadpool(svc.app.run_batch, [job]))[0]
    command = "create" if job.create is not None else request.scope["path"].rsplit("/", 1)[-1]
    if request.method == "PATCH":
        command = "update"
    if isinstance(outcome, Exception):
        svc.metrics.command(command, type(outcome).__name__)
        raise outcome
    if job.check_key:  # its commit found the key active
        del request.scope["state"][UNCONFIRMED_KEY]
    svc.metrics.command(command, "ok")
    await svc.written_async(outcome.position)
    return outcome


# --- endpoints -------------------------------------------------------------------


def unconfirmed(request: Request) -> bool:
    """Whether the request's key came from memory, so that its job must confirm it (Job.check_key)."""
    return UNCONFIRMED_KEY in request.scope["state"]


async def create_task(request: Request) -> Response:
    command = await read_body(request, c.CreateTask)
    written = await run_job(request, Job(by=actor(request), create=command, check_key=unconfirmed(request)))
    data = p.created(written.task, base_url(request))
    headers = {**etag(written.task), "Location": data.tracking_url}
    return envelope(request, data, 201, written.position, headers)


async def get_task(request: Request) -> Response:
    if not request.scope["query_string"]:  # the current state: from the task cache while it is current
        return await task_read.current_task(request, _matches)
    task_id = request.path_params["task_id"]
    at = as_of.task_at_query(request)  # ?version=N or ?asOf=<time>: the task as it stood then
    task = visible(request, await run_in_threadpool(as_of.task_at, services(request).app, task_id,
                                                    principal(request).tenant, at))
    if _matches(header(request.scope, b"if-none-match"), task.version):
        return Response(status_code=304, headers=etag(task))
    return envelope(request, p.task_view(task, base_url(request)), headers=etag(task))


async def list_tasks(request: Request) -> Response:
    query: ListTasksQuery = read_query(request, ListTasksQuery)
    if query.cursor is not None and query.offset:
        raise ApiError(422, "validation_error", "give either cursor or offset, not both",
                       {"field": "$.offset", "in": "query"})
    who = principal(request)
    if (only := who.only_agent) is not None:  # an agent lists only its own tasks
        if query.agent_id not in (None, only):
            return envelope(request, s.TaskPage(tasks=[], total=0, limit=query.limit, offset=query.offset,
                                                has_more=False))
        query = msgspec.structs.replace(query, agent_id=only)
    svc = services(request)
    view = svc.list_view
    if query.min_position > 0:  # no thread hop for the usual query, which waits for nothing
        await run_in_threadpool(read_models.wait_for, svc, view, query.min_position)
    csv = wants_csv(request)
    base = base_url(request)
    presented = svc.summaries
    # A page of the position the in-process runner has the view at was answered before: answer the
    # same (not with overdue, which depends on the time; a runner that stopped holds no position).
    now_at = None if csv or query.overdue is not None else view_position(svc, view)
    key = ("list", who.tenant, query, base)
    held = None if now_at is None else presented.held(key, now_at)
    if held is not None:
        total, next_cursor, tasks = held
        position = now_at
    else:
        known = None if csv else presented.known  # rows whose summary JSON is cached are not read whole
        if view.answers_quickly(query):  # a few index seeks: cheaper than the hop to a thread
            rows, total, position, next_cursor = view.page(who.tenant, query, known=known)
        else:
            rows, total, position, next_cursor = await run_in_threadpool(view.page, who.tenant, query, None, known)
        if csv:
            headers = {"X-Projection-Position": str(position), "X-Total-Count": str(total)}
            if next_cursor:
                headers["X-Next-Cursor"] = next_cursor
            tasks = [p.summary(row, base) for row in rows]
            fields = list(s.TaskSummary.__struct_encode_fields__)
            return csv_response(fields, ([_csv_value(getattr(t, f)) for f in s.TaskSummary.__struct_fields__]
                                         for t in tasks), headers)
        tasks = presented.tasks_json(rows, base)
        if now_at is not None:
            presented.keep(key, position, (total, next_cursor, tasks), len(tasks))
    page = p.EncodedPage(  # encodes as s.TaskPage; each summary's JSON from the cache
        tasks=tasks,
        total=total,
        limit=query.limit,
        offset=query.offset,
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )
    headers = {"X-Projection-Position": str(position), "X-Total-Count": str(total)}
    return envelope(request, page, headers=headers)


def view_position(svc: Services, view: Any) -> int | None:
    """The position this process's runner has the view at, or None when no running runner here
    keeps it (then an answer is not reused: see SummaryCache.held)."""
    runner = read_models.runner_of(svc, view)
    return runner.position if runner is not None and runner.status == "running" else None


def _csv_value(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


async def get_deliverables(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    task = visible(request, await run_in_threadpool(services(request).app.get_task, task_id, principal(request).tenant))
    if task.status.value != "completed":
        raise ApiError(409, "invalid_transition",
                       f"deliverables are available once the task is completed; it is {task.status.value}",
                       {"status": task.status.value, "allowedStatuses": ["completed"]})
    return envelope(request, p.deliverables(task), headers=etag(task))


def command_endpoint(command_type: type[Any]) -> Callable[[Request], Any]:
    """An endpoint that decodes one command and applies it to one task (Task.handle)."""

    async def endpoint(request: Request) -> Response:
        command = await read_body(request, command_type)
        job = Job(by=actor(request), task_id=request.path_params["task_id"], command=command,
                  expected_version=expected_version(request), only_agent=principal(request).only_agent,
                  check_key=unconfirmed(request))
        written = await run_job(request, job)
        return envelope(request, p.task_view(written.task, base_url(request)), 200, written.position,
                        etag(written.task))

    return endpoint


async def healthz(request: Request) -> Response:
    """Liveness: the process answers; says nothing of the database."""
    return envelope(request, s.Health(status="ok"))


async def readyz(request: Request) -> Response:
    """Readiness: the database answers a query now."""
    try:
        await run_in_threadpool(services(request).store.ping)
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        raise ApiError(503, "unavailable", f"the database is unavailable: {type(error).__name__}",
                       headers={"Retry-After": "1"}) from None
    return envelope(request, s.Health(status="ready"))


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(services(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


COMMANDS: tuple[tuple[str, type[Any], frozenset[str], str], ...] = (  # each struct's method: domain.task.HANDLERS
    ("cancel", c.CancelTask, REQUESTERS, "Cancel a task that has not ended"),
    ("retry", c.RetryTask, REQUESTERS, "Retry a failed task"),
    ("feedback", c.GiveFeedback, REQUESTERS, "Give feedback on a completed task"),
    ("escalate", c.EscalateTask, REQUESTERS, "Raise the priority, maybe hand the task on"),
    ("assign", c.AssignTask, REQUESTERS, "Assign the task to an agent"),
    ("request-changes", c.RequestChanges, REQUESTERS, "Send the work back from review"),
    ("start", c.StartTask, WORKERS, "The agent starts work"),
    ("progress", c.ReportProgress, WORKERS, "Report progress (0-100)"),
    ("block", c.BlockTask, WORKERS, "Mark the task blocked on something external"),
    ("unblock", c.UnblockTask, WORKERS, "Resume a blocked task"),
    ("review", c.SubmitForReview, WORKERS, "Submit the work for review"),
    ("complete", c.CompleteTask, WORKERS, "Complete the task with its result and deliverables"),
    ("fail", c.FailTask, WORKERS, "Record that the task failed"),
)


def operations() -> list[Operation]:
    base = "/agents/tasks"
    ops = [
        Operation("GET", "/healthz", "healthz", "Liveness", healthz, s.Envelope[s.Health], tag="service",
                  roles=EVERYONE),
        Operation("GET", "/readyz", "readyz", "Readiness: the database answers", readyz, s.Envelope[s.Health],
                  tag="service", roles=EVERYONE),
        Operation("GET", "/metrics", "metrics", "Prometheus metrics", metrics, str, tag="service", roles=EVERYONE),
        Operation("POST", base, "create_task", "Create a task", create_task, s.Envelope[s.CreatedTask], 201,
                  body=c.CreateTask, roles=REQUESTERS, through_writer=True),
        Operation("GET", base, "list_tasks", "List tasks with filters", list_tasks, s.Envelope[s.TaskPage],
                  query=ListTasksQuery, roles=READERS),
        Operation("GET", base + "/{task_id}", "get_task", "Get a task's status", get_task, s.Envelope[s.TaskView],
                  query=as_of.TaskAt, roles=TASK_READERS),
        Operation("PATCH", base + "/{task_id}", "update_task", "Update priority, deadline, context or notes",
                  command_endpoint(c.UpdateTask), s.Envelope[s.TaskView], body=c.UpdateTask,
                  roles=REQUESTERS, through_writer=True),
        Operation("GET", base + "/{task_id}/deliverables", "get_deliverables", "Deliverables of a completed task",
                  get_deliverables, s.Envelope[s.Deliverables], roles=TASK_READERS),
    ]
    for action, command_type, roles, summary in COMMANDS:
        ops.append(Operation("POST", f"{base}/{{task_id}}/{action}", action.replace("-", "_") + "_task", summary,
                             command_endpoint(command_type), s.Envelope[s.TaskView], body=command_type,
                             roles=roles, through_writer=True))
    return ops


def idempotent(op: Operation) -> bool:
    """Whether Idempotency-Key applies: every POST but issuing a key, whose secret is never stored."""
    return op.method == "POST" and "public" not in op.roles and op.name != "create_key"


def routes(ops: list[Operation]) -> list[Route]:
    """One route per path, so that a 405 names every method the path allows."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in ops:
        by_path.setdefault(op.path, {})[op.method] = op
    # Starlette tries routes in order: the task paths, which take nearly every request, go first
    # (their own order kept, so /agents/tasks/stats still precedes /agents/tasks/{task_id}).
    paths = sorted(by_path, key=lambda path: not path.startswith("/agents/tasks"))
    return [Route(path, _by_method(by_path[path]), methods=list(by_path[path])) for path in paths]


def _by_method(methods: dict[str, Operation]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        op = methods["GET" if request.method == "HEAD" else request.method]
        if "public" not in op.roles:
            role = principal(request).role
            if role not in op.roles:
                raise ApiError(403, "forbidden", f"a key with role {role} may not {op.summary.lower()}",
                               {"role": role, "allowedRoles": sorted(op.roles)})
        if idempotent(op) and (key := idempotency.idempotency_key(request)):
            svc = services(request)
            request_hash = idempotency.fingerprint(op.method, request.url.path, await raw_body(request))
            return await idempotency.run_once(request, svc.idempotency, principal(request).key_id, key,
                                              request_hash, svc.settings.idempotency_wait,
                                              lambda: op.endpoint(request))
        return await op.endpoint(request)  # type: ignore[no-any-return]

    return endpoint
