"""The OpenAPI 3.1 document, generated from the operation table and msgspec structs."""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.http import schemas as s
from adapters.http.api import Operation, idempotent

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
    "429": "Over the key's rate limit (Retry-After)",
    "500": "The service failed; quote the requestId",
}
PATH_PARAMETERS = {"task_id": "^task_[0-9a-f]{32}$", "key_id": "^key_[0-9a-f]{16}$"}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Repeat a POST safely: the same key and body replay the first answer (README: Security).",
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
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
        item["parameters"] = [{"name": name, "in": "path", "required": True,
                               "schema": {"type": "string", "pattern": pattern}}
                              for name, pattern in PATH_PARAMETERS.items() if f"{{{name}}}" in op.path]
        if op.body is not None:
            required = any(f.required for f in msgspec.structs.fields(op.body))  # an empty body is {}
            item["requestBody"] = {"required": required,
                                   "content": {"application/json": {"schema": by_type[op.body]}}}
        if op.query is not None:
            item["parameters"] += _query_parameters(op.query)
        if idempotent(op):
            item["parameters"] = [*item["parameters"], IDEMPOTENCY_KEY]
        if not item["parameters"]:
            del item["parameters"]
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
        {"name": name, "in": "query", "required": False, "schema": _not_null(field_schema)}
        for name, field_schema in definition["properties"].items()
    ]


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is left out, never null: keep only the non-null branch of `X | None`."""
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        return {**branches[0], **{k: v for k, v in schema.items() if k not in ("anyOf", "default")}}
    return schema
