"""Bounds on the free-form JSON objects of a command (context, budget, result.data, error.details).

The schema cannot bound their depth or size, so they are checked after decoding,
with limits from the settings, and a breach names the field (422).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
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


@functools.cache
def _fields(struct_type: type[msgspec.Struct]) -> tuple[tuple[str, str], ...]:
    """(attribute, wire name) of a struct type's fields; msgspec.structs.fields evaluates
    the type hints on every call, so it is asked once per type."""
    return tuple((field.name, field.encode_name) for field in msgspec.structs.fields(struct_type))


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


def _refuse(field: str, reason: str, extra: dict[str, Any]) -> None:
    raise ApiError(422, "validation_error", f"body is invalid at {field}: {reason}",
                   {"field": field, "in": "body", "reason": reason, **extra})
