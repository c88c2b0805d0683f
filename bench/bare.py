"""The bare Starlette baseline for bench/http_bench.py.

Two endpoints on the service's own paths, so the same wrk scripts drive both
servers and only the server differs:

- ``GET /agents/tasks/{task_id}``: a JSON envelope about the size of the
  service's task view (no storage, no auth).
- ``POST /agents/tasks``: the body decoded and validated into the service's own
  ``domain.commands.CreateTask`` msgspec struct, answered with a 201 envelope
  about the size of the service's create answer (422 on a bad body).

Run it the way ``tasks serve`` runs the service (``uvicorn.run`` with the same
defaults: one worker, loop and http "auto", i.e. uvloop and httptools):

    .venv/bin/python bench/bare.py --port 8001 --log-level warning
"""

from __future__ import annotations

import argparse
import secrets
from datetime import datetime, timezone
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.commands import CreateTask

_encoder = msgspec.json.Encoder()


def _metadata() -> dict[str, Any]:
    return {"requestId": "req_" + secrets.token_hex(8), "timestamp": datetime.now(timezone.utc)}


def _task_view(task_id: str, base: str) -> dict[str, Any]:
    """A stand-in as large as the service's task view (the README's GET example)."""
    return {
        "taskId": task_id,
        "status": "assigned",
        "task": "Analyze Q4 revenue trends and create executive report",
        "agentId": "amy", "agentName": "Amy", "teamId": None,
        "priority": "high", "progress": 0, "currentPhase": None,
        "deadline": "2024-10-30T17:00:00Z",
        "context": {"dataSource": "revenue_q4_2024.csv", "focusAreas": ["growth", "churn", "expansion"],
                    "targetAudience": "C-suite executives"},
        "budget": None,
        "expectedDeliverables": ["pdf-report", "presentation", "data-analysis"],
        "timeline": {
            "createdAt": "2026-11-25T14:49:25.062250Z", "assignedAt": "2026-11-25T14:49:25.062415Z",
            "startedAt": None, "completedAt": None, "failedAt": None, "cancelledAt": None,
            "updatedAt": "2026-11-25T14:49:25.062415Z", "duration": None, "durationSeconds": None,
        },
        "result": None, "deliverables": [], "quality": None, "error": None,
        "attempt": 1, "notes": [], "feedback": [],
        "blockedReason": None, "cancelReason": None, "escalations": 0,
        "estimatedCompletion": None, "estimatedDuration": None,
        "trackingUrl": f"{base}agents/tasks/{task_id}",
        "version": 2,
    }


async def get_task(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    body = {"success": True, "data": _task_view(task_id, str(request.base_url)), "metadata": _metadata()}
    return Response(_encoder.encode(body), 200, headers={"ETag": '"2"'}, media_type="application/json")


async def create_task(request: Request) -> Response:
    try:
        command = msgspec.json.decode(await request.body(), type=CreateTask)
    except msgspec.ValidationError as error:
        body = {"success": False, "error": {"code": "validation_error", "message": str(error)},
                "metadata": _metadata()}
        return Response(_encoder.encode(body), 422, media_type="application/json")
    except msgspec.DecodeError as error:
        body = {"success": False, "error": {"code": "invalid_json", "message": str(error)},
                "metadata": _metadata()}
        return Response(_encoder.encode(body), 400, media_type="application/json")
    task_id = "task_" + secrets.token_hex(16)
    tracking = f"{request.base_url}agents/tasks/{task_id}"
    data = {
        "taskId": task_id,
        "status": "assigned" if command.agent_id else "pending",
        "task": command.task,
        "agentId": command.agent_id,
        "agentName": command.agent_id.replace("-", " ").title() if command.agent_id else None,
        "teamId": command.team_id,
        "priority": command.priority,
        "deadline": command.deadline,
        "estimatedCompletion": None,
        "estimatedDuration": None,
        "deliverables": command.deliverables,
        "trackingUrl": tracking,
        "createdAt": datetime.now(timezone.utc),
        "version": 2 if command.agent_id else 1,
    }
    meta = {**_metadata(), "position": 1}
    body = {"success": True, "data": data, "metadata": meta}
    headers = {"ETag": f'"{data["version"]}"', "Location": tracking}
    return Response(_encoder.encode(body), 201, headers=headers, media_type="application/json")


def create_app() -> Starlette:
    return Starlette(routes=[
        Route("/agents/tasks", create_task, methods=["POST"]),
        Route("/agents/tasks/{task_id}", get_task, methods=["GET"]),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    import uvicorn

    # The same call as `tasks serve` (adapters/cli.py), so the server settings match.
    uvicorn.run("bare:create_app", factory=True, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
