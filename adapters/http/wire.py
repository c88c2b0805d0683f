"""Headers in and JSON out on the hot paths, without Starlette's per-call objects.

``request.headers.get(name)`` builds a ``Headers`` object, lower-cases and encodes the name,
and, for a header the request does not carry (``Idempotency-Key``, ``If-Match``, most of the
time), raises and catches a ``KeyError`` inside ``Mapping.get``. ``Response.__init__`` encodes
and scans its header dict on every call. A create reads three headers and sends one answer,
a GET one and one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """A request header's first value (``name`` in lower case, as ASGI servers send names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


class JsonBytes(Response):
    """A response of JSON already encoded, with its headers already as bytes: what
    Response.__init__ would send (the given headers, then content-length and content-type),
    without its per-call header encoding and checks."""

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]], status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [*headers, (b"content-length", str(len(body)).encode()),
                            (b"content-type", b"application/json")]
