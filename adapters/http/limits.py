"""Bounds on the free-form JSON objects of a command (context, budget, result.data, error.details).

The schema cannot bound their depth or size, so they are checked after decoding,
with limits from the settings, and a breach names the field (422).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import msgspec

from adapters.http.errors import ApiError


def check_free_form(command: Any, max_depth: int, max_bytes: int) -> None:
    """422 on the first free-form object nested deeper than max_depth or larger than max_bytes."""
    for field, value in _free_form(command, "$"):
        if depth(value) > max_depth:
            _refuse(field, f"nested deeper than {max_depth} levels", {"maxDepth": max_depth})
        size = len(msgspec.json.encode(value))
        if size > max_bytes:
            _refuse(field, f"{size} bytes encoded, over the limit of {max_bytes}", {"maxBytes": max_bytes})


# A number re-encodes at most ~4.5 times longer than it was sent ("9e15" -> 9000000000000000.0).
ENCODED_GROWTH = 8


def within_free_form_limits(body: bytes, max_depth: int, max_bytes: int) -> bool:
    """True when no free-form object in this raw JSON body can break either limit, so the
    walk over the decoded command can be skipped: an object cannot nest deeper than the
    body has brackets, nor re-encode larger than the body may grow."""
    return body.count(b"{") + body.count(b"[") <= max_depth and len(body) * ENCODED_GROWTH <= max_bytes


def depth(value: Any) -> int:
    """How deeply objects and arrays nest: 0 for a scalar, 1 for {} or []."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _free_form(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, msgspec.Struct):
        for name, encode_name in _fields(type(value)):
            yield from _free_form(getattr(value, name), f"{path}.{encode_name}")
    elif isinstance(value, dict):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, msgspec.Struct):
                yield from _free_form(item, f"{path}[{index}]")


@cache
def _fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, str], ...]:
    """A struct's (attribute, wire) names: msgspec.structs.fields() evaluates the type
    annotations on every call (half a create's CPU when called per request)."""
    return tuple((field.name, field.encode_name) for field in msgspec.structs.fields(struct))


def _refuse(field: str, reason: str, extra: dict[str, Any]) -> None:
    raise ApiError(422, "validation_error", f"body is invalid at {field}: {reason}",
                   {"field": field, "in": "body", "reason": reason, **extra})
