"""Key administration over HTTP: an admin key issues, lists and revokes the keys of its own tenant."""

from __future__ import annotations

from typing import Literal

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from adapters.http import schemas as s
from adapters.http.api import ADMIN, Operation, envelope, principal, read_body, services
from adapters.http.errors import ApiError
from adapters.keys import InvalidGrantError, KeyRecord
from domain.commands import Command, Identifier, Label

Role = Literal["admin", "client", "agent", "auditor", "analyst"]


class CreateKey(Command):
    role: Role
    agent_id: Identifier | None = None
    label: Label | None = None


class KeyView(s.Shape):
    key_id: str
    tenant: str
    role: str
    agent_id: str | None
    label: str | None
    created_at: str
    revoked_at: str | None


class IssuedKey(KeyView):
    secret: str  # shown only in this answer


class KeyList(s.Shape):
    keys: list[KeyView]


def _view(record: KeyRecord) -> KeyView:
    return msgspec.convert(record, KeyView, from_attributes=True)


async def create_key(request: Request) -> Response:
    command: CreateKey = await read_body(request, CreateKey)
    keys, tenant = services(request).keys, principal(request).tenant
    try:
        key_id, secret = await run_in_threadpool(keys.issue, tenant, command.role, command.agent_id, command.label)
    except InvalidGrantError as error:
        raise ApiError(422, "validation_error", str(error), {"field": "$.agentId", "in": "body"}) from None
    record = await run_in_threadpool(keys.get, key_id, tenant)
    assert record is not None
    issued = IssuedKey(**msgspec.structs.asdict(_view(record)), secret=secret)  # the only time it is shown
    return envelope(request, issued, 201, headers={"Cache-Control": "no-store"})


async def list_keys(request: Request) -> Response:
    records = await run_in_threadpool(services(request).keys.list, principal(request).tenant)
    return envelope(request, KeyList(keys=[_view(r) for r in records]))


async def revoke_key(request: Request) -> Response:
    key_id = request.path_params["key_id"]
    record = await run_in_threadpool(services(request).keys.revoke, key_id, principal(request).tenant)
    if record is None:
        raise ApiError(404, "not_found", f"key {key_id} not found", {"keyId": key_id})
    return envelope(request, _view(record))


def operations() -> list[Operation]:
    return [
        Operation("POST", "/keys", "create_key", "Issue a key of the caller's tenant (its secret is shown once)",
                  create_key, s.Envelope[IssuedKey], 201, body=CreateKey, tag="keys", roles=ADMIN),
        Operation("GET", "/keys", "list_keys", "List the keys of the caller's tenant", list_keys,
                  s.Envelope[KeyList], tag="keys", roles=ADMIN),
        Operation("DELETE", "/keys/{key_id}", "revoke_key", "Revoke a key at once", revoke_key,
                  s.Envelope[KeyView], tag="keys", roles=ADMIN),
    ]
