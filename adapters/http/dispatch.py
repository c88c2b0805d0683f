"""Finding a request's endpoint by a dictionary walk over its path, and calling it directly.

Starlette routes a request through an exception middleware, the router (a regular
expression tried per route, in order), the route and an exception wrapper: about a
fifth of the event loop's CPU on a create. ``Dispatcher`` serves the same routes
with one dictionary lookup per path segment and maps an endpoint's exception to its
response with the same handlers (``errors.EXCEPTION_HANDLERS``).

It answers only what it is sure of: a path and method that one route serves in
full. Anything else — no route, a method the path does not allow (405), a trailing
slash to redirect, a mounted app, a root path — goes on to Starlette's router, so
every answer stays Starlette's own. Literal segments are tried before a parameter,
which is the order of ``api.routes`` (``/agents/tasks/stats`` before
``/agents/tasks/{task_id}``); a test checks that every operation resolves to the
route Starlette's router picks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request, Exception], Any]
_PARAM = "{}"  # the trie's key for "any one non-empty segment"


class _Node:
    __slots__ = ("children", "route", "names")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.route: Route | None = None  # the route whose path ends here
        self.names: tuple[str, ...] = ()  # its parameters' names, in path order


class Dispatcher:
    def __init__(self, routes: Sequence[BaseRoute], handlers: dict[Any, Handler]) -> None:
        self._root = _Node()
        self._handlers = handlers
        self._handler_for: dict[type, Handler | None] = {}
        for route in routes:
            if isinstance(route, Route) and inspect.iscoroutinefunction(route.endpoint):
                self._add(route)

    def _add(self, route: Route) -> None:
        node, names = self._root, []
        for segment in route.path.strip("/").split("/"):
            if segment.startswith("{"):
                name, _, convertor = segment[1:-1].partition(":")
                if convertor not in ("", "str"):
                    return  # a typed parameter: Starlette's router converts it
                names.append(name)
                segment = _PARAM
            node = node.children.setdefault(segment, _Node())
        if node.route is None:  # the first route of a path wins, as in Starlette's ordered list
            node.route, node.names = route, tuple(names)

    def find(self, scope: Scope) -> tuple[Route, dict[str, str]] | None:
        """The route that fully serves this request, with its path parameters; None when unsure."""
        if scope.get("root_path"):
            return None
        path: str = scope["path"]
        if not path.startswith("/"):
            return None
        segments = path[1:].split("/")
        found = _walk(self._root, segments, 0, [])
        if found is None:
            return None
        node, values = found
        route = node.route
        assert route is not None
        if route.methods is not None and scope["method"] not in route.methods:
            return None  # Starlette answers 405 with the Allow header
        return route, dict(zip(node.names, values))

    async def __call__(self, route: Route, params: dict[str, str], scope: Scope, receive: Receive,
                       send: Send) -> None:
        """Call the route's endpoint and send its response, or the response its exception maps to."""
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as error:
            handler = self._handler(type(error))
            if handler is None:
                raise
            response = handler(request, error)
            if inspect.isawaitable(response):
                response = await response
            error.__traceback__ = None  # a reused exception must not pile up tracebacks
        await response(scope, receive, send)

    def _handler(self, kind: type) -> Handler | None:
        if kind not in self._handler_for:
            self._handler_for[kind] = next((self._handlers[k] for k in kind.__mro__ if k in self._handlers), None)
        return self._handler_for[kind]


def _walk(node: _Node, segments: list[str], at: int, values: list[str]) -> tuple[_Node, list[str]] | None:
    """The node of the route the segments lead to (literals first), with the parameters' values."""
    if at == len(segments):
        return (node, values) if node.route is not None else None
    segment = segments[at]
    child = node.children.get(segment)
    if child is not None and segment != _PARAM:
        found = _walk(child, segments, at + 1, values)
        if found is not None:
            return found
    child = node.children.get(_PARAM)
    if child is not None and segment:
        return _walk(child, segments, at + 1, [*values, segment])
    return None
