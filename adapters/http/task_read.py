"""GET /agents/tasks/{id} for the current state: served from the task cache while no event
came after the cached version, replayed from its events when one did (README: Read path)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters.changes import EVENTS, MAX_TRUST
from adapters.http import presenters as p
from adapters.http import schemas as s
from adapters.http.wire import JsonBytes, header
from domain.errors import TaskNotFoundError
from domain.ids import parse_id

_encoder = msgspec.json.Encoder()
_HEAD = b'{"success":true,"data":'
INLINE_REPLAY = 32  # events; replay costs ~5 µs an event, a thread-pool hop more than a few of them


_bases: dict[tuple[Any, ...], str] = {}


def base_url(request: Request) -> str:
    """str(request.base_url), built once per scheme, server, root path and Host header."""
    scope = request.scope
    hosts = tuple(value for name, value in scope["headers"] if name == b"host")
    server = scope.get("server")
    key = (scope.get("scheme"), server and tuple(server), scope.get("app_root_path"), scope.get("root_path"),
           hosts)
    base = _bases.get(key)
    if base is None:
        base = str(request.base_url)
        if len(_bases) < 256:  # Host comes from clients: keep the memo bounded
            _bases[key] = base
    return base


async def current_task(request: Request, not_modified: Any) -> Response:
    """The task as it stands now; ``not_modified(header, version)`` decides a 304."""
    svc = request.scope["state"]["services"]
    who = request.user.principal
    task_id: str = request.path_params["task_id"]
    uuid = parse_id(task_id)
    base = base_url(request)
    cache = svc.task_cache
    entry = cache.get(uuid)
    if entry is not None and entry.base_url != base:
        entry = None
    changes = svc.reads.changes
    before = changes.value(EVENTS) if changes is not None else None
    now = time.monotonic()
    read = not (entry is not None and entry.checked == before and entry.trusted_until > now)
    if not read:
        events = []  # no event was appended anywhere since the log last showed this version as the newest
    else:
        # One indexed read answers both "is the copy current?" and, for an uncached task, "what are its events?"
        events = await svc.reads.task_events(uuid, entry.version if entry else 0)
        if entry is not None and events:  # changed since it was cached: replay from the start
            events = await svc.reads.task_events(uuid, 0)
    view: bytes | None = None  # the JSON view, when this request presented it (a hit unpacks the entry's)
    if entry is None or events:
        cache.misses += 1
        if len(events) <= INLINE_REPLAY:  # a few events replay faster than a hop to a worker thread
            task = svc.reads.replay(uuid, events)
        else:
            task = await run_in_threadpool(svc.reads.replay, uuid, events)
        if task is None:
            raise TaskNotFoundError(task_id)
        view = _encoder.encode(p.task_view(task, base))
        entry = cache.entry(task.version, task.tenant, task.agent_id, base, view)
        cache.put(uuid, entry)
    else:
        cache.hits += 1
    if read and before is not None:  # the log showed this version as the newest after `before`
        entry.checked, entry.trusted_until = before, now + MAX_TRUST
    only = who.only_agent
    if entry.tenant != who.tenant or (only is not None and entry.agent_id != only):
        raise TaskNotFoundError(task_id)  # another tenant's task, or another agent's, is as missing
    etag = f'"{entry.version}"'
    if not_modified(header(request.scope, b"if-none-match"), entry.version):
        return Response(status_code=304, headers={"ETag": etag})
    now = datetime.now(timezone.utc)
    metadata = _encoder.encode(s.Metadata(request_id=request.scope["state"]["request_id"], timestamp=now))
    data = entry.view if view is None else view
    return JsonBytes(b"".join((_HEAD, data, b',"metadata":', metadata, b"}")), [(b"etag", etag.encode())])
