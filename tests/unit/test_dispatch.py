"""The dispatcher serves exactly the routes Starlette's router would pick, and leaves the rest to it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Match, Route

import app as composition
from adapters.http import api
from adapters.http.dispatch import Dispatcher
from adapters.http.errors import EXCEPTION_HANDLERS

TASK_ID = "task_0123456789abcdef0123456789abcdef"


def _routes() -> list[Route]:
    return api.routes(composition.operations())


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def _starlette_pick(routes: list[Route], scope: dict[str, Any]) -> tuple[Route, dict[str, Any]] | None:
    """What Starlette's Router does: the first full match in order, else nothing served directly."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child["path_params"]
        if match is Match.PARTIAL:
            return None  # it would answer 405 (or the first full match after it: left to Starlette too)
    return None


def _concrete(path: str) -> str:
    return path.replace("{task_id}", TASK_ID).replace("{key_id}", "key_0123").replace("{", "").replace("}", "")


@pytest.mark.parametrize("op", composition.operations(), ids=lambda op: f"{op.method} {op.path}")
def test_every_operation_is_dispatched_to_the_route_starlette_picks(op: api.Operation) -> None:
    routes = _routes()
    dispatcher = Dispatcher(routes, EXCEPTION_HANDLERS)
    scope = _scope(op.method, _concrete(op.path))
    expected = _starlette_pick(routes, scope)
    found = dispatcher.find(scope)
    assert expected is not None, f"{op.method} {op.path} is not served by Starlette's router either"
    assert found is not None
    assert found[0] is expected[0]
    assert found[1] == expected[1]


@pytest.mark.parametrize("method, path, served", [
    ("GET", "/agents/tasks/stats", True),  # a literal before a parameter
    ("PATCH", "/agents/tasks/stats", False),  # the literal's route lacks PATCH: Starlette decides
    ("GET", "/agents/tasks/", False),  # a trailing slash: Starlette redirects
    ("GET", "/agents//tasks", False),
    ("GET", "/agents/tasks//start", False),  # an empty parameter matches nothing
    ("DELETE", "/agents/tasks", False),  # 405 with Allow
    ("GET", "/nowhere", False),
    ("POST", f"/agents/tasks/{TASK_ID}/start/extra", False),
    ("GET", f"/agents/tasks/{TASK_ID}", True),
    ("HEAD", f"/agents/tasks/{TASK_ID}", True),
    ("POST", f"/agents/tasks/{TASK_ID}/request-changes", True),
])
def test_the_dispatcher_serves_only_what_starlette_would_serve_the_same_way(method: str, path: str,
                                                                          served: bool) -> None:
    routes = _routes()
    found = Dispatcher(routes, EXCEPTION_HANDLERS).find(_scope(method, path))
    assert (found is not None) == served
    if found is not None:  # else Starlette's router answers it, as before
        expected = _starlette_pick(routes, _scope(method, path))
        assert expected is not None and found[0] is expected[0] and found[1] == expected[1]


def test_under_a_root_path_everything_goes_to_starlette() -> None:
    scope = {**_scope("GET", "/api/agents/tasks"), "root_path": "/api"}
    assert Dispatcher(_routes(), EXCEPTION_HANDLERS).find(scope) is None
