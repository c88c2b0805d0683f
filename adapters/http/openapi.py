"""The OpenAPI 3.1 document, generated from the operation table and msgspec structs."""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.http import schemas as s
from adapters.http.api import Operation

REF = "#/components/schemas/{name}"
ERRORS = {
    "400": "Unreadable body or header",
    "401": "No key or an unknown key",
    "403": "The key's role may not do this",
    "404": "No such task",
    "409": "The task's status does not allow this",
    "412": "If-Match is not the current version",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "A field fails validation",
}


def document(ops: list[Operation], version: str) -> dict[str, Any]:
    types: list[Any] = [s.ErrorEnvelope]
    for op in ops:
        types.append(op.response)
        if op.body is not None:
            types.append(op.body)
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    by_type = dict(zip(types, schemas))
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        item: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {
                str(op.status): {"description": "Success", "content": _content(op.response, by_type)},
            },
        }
        if "public" not in op.roles:
            item["security"] = [{"bearer": []}]
            error_ref = {"content": {"application/json": {"schema": by_type[s.ErrorEnvelope]}}}
            for code, description in ERRORS.items():
                item["responses"][code] = {"description": description, **error_ref}
        if "{task_id}" in op.path:
            item["parameters"] = [{"name": "task_id", "in": "path", "required": True,
                                   "schema": {"type": "string", "pattern": "^task_[0-9a-f]{32}$"}}]
        if op.body is not None:
            item["requestBody"] = {"required": op.name == "create_task",
                                   "content": {"application/json": {"schema": by_type[op.body]}}}
        if op.query is not None:
            item["parameters"] = _query_parameters(op.query)
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tasks API", "version": version,
                 "description": "Event-sourced lifecycle of tasks done by agents or teams."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _content(response: Any, by_type: dict[Any, Any]) -> dict[str, Any]:
    if response is str:  # plain text, e.g. the Prometheus exposition
        return {"text/plain": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": by_type[response]}}


def _query_parameters(query_type: type) -> list[dict[str, Any]]:
    (schema,), components = msgspec.json.schema_components([query_type], ref_template=REF)
    definition = components[schema["$ref"].rsplit("/", 1)[1]]
    return [
        {"name": name, "in": "query", "required": False, "schema": field_schema}
        for name, field_schema in definition["properties"].items()
    ]
