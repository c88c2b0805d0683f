"""GET /agents/tasks/{id} for the current state: served from the task cache while the
task's newest version is unchanged, replayed (off the event loop) when it changed."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters.http import presenters as p
from adapters.http import schemas as s
from adapters.http.task_cache import CachedTask
from domain.errors import TaskNotFoundError
from domain.ids import parse_id

_encoder = msgspec.json.Encoder()
_HEAD = b'{"success":true,"data":'


async def current_task(request: Request, not_modified: Any) -> Response:
    """The task as it stands now; ``not_modified(header, version)`` decides a 304."""
    svc = request.state.services
    who = request.user.principal
    task_id: str = request.path_params["task_id"]
    uuid = parse_id(task_id)
    version = await svc.reads.task_version(uuid)
    if version is None:
        raise TaskNotFoundError(task_id)
    base = str(request.base_url)
    entry = svc.task_cache.get(uuid, version, base)
    if entry is None:
        task = await run_in_threadpool(svc.reads.load, uuid)
        if task is None:
            raise TaskNotFoundError(task_id)
        entry = CachedTask(task.version, task.tenant, task.agent_id, base,
                           _encoder.encode(p.task_view(task, base)))
        svc.task_cache.put(uuid, entry)
    if entry.tenant != who.tenant or (who.role == "agent" and entry.agent_id != who.agent_id):
        raise TaskNotFoundError(task_id)  # another tenant's task, or another agent's, is as missing
    headers = {"ETag": f'"{entry.version}"'}
    if not_modified(request.headers.get("if-none-match"), entry.version):
        return Response(status_code=304, headers=headers)
    metadata = _encoder.encode(s.Metadata(request_id=request.state.request_id, timestamp=datetime.now(timezone.utc)))
    return Response(b"".join((_HEAD, entry.data, b',"metadata":', metadata, b"}")), headers=headers,
                    media_type="application/json")
