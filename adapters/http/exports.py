"""What the read endpoints share: strict query parsing, minPosition, and CSV for analysts."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from adapters.http.errors import ApiError, validation_details

CSV = "text/csv"


def parse_query(request: Request, query_type: type[Any]) -> Any:
    """The query string decoded into its struct (422 naming the parameter). Each parameter may come
    once; text stays text (`?agentId=null` is the agent "null", `?status=null` is refused), and
    only integer and boolean fields parse numbers and true/false."""
    params = request.query_params
    repeated = sorted({name for name in params if len(params.getlist(name)) > 1})
    if repeated:
        raise ApiError(422, "validation_error", f"query parameter {repeated[0]} is given more than once",
                       {"field": f"$.{repeated[0]}", "in": "query", "reason": "given more than once"})
    integers, booleans = _typed_names(query_type)
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name in integers and _INTEGER.match(value):
            values[name] = int(value)
        elif name in booleans and value.lower() in _BOOLEANS:
            values[name] = _BOOLEANS[value.lower()]
        else:
            values[name] = value
    try:
        return msgspec.convert(values, query_type)
    except msgspec.ValidationError as error:
        message, details = validation_details(error, "query")
        raise ApiError(422, "validation_error", message, details) from None


@cache
def _typed_names(query_type: type[Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The parameters that take integers, and those that take booleans (inspected once per type:
    msgspec.inspect costs more than the rest of a list request)."""
    fields = msgspec.inspect.type_info(query_type).fields  # type: ignore[attr-defined]
    return (frozenset(f.encode_name for f in fields if _takes(f.type, msgspec.inspect.IntType)),
            frozenset(f.encode_name for f in fields if _takes(f.type, msgspec.inspect.BoolType)))


_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _takes(kind: Any, wanted: type) -> bool:
    if isinstance(kind, msgspec.inspect.Metadata):  # Annotated[…, Meta(…)] without constraints msgspec keeps
        kind = kind.type
    options = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
    return any(isinstance(getattr(o, "type", o) if isinstance(o, msgspec.inspect.Metadata) else o, wanted)
               for o in options)


def wants_csv(request: Request) -> bool:
    """Whether the caller asked for CSV (``Accept: text/csv``) rather than JSON."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == CSV for part in accept.split(","))


def csv_response(header: Sequence[str], rows: Iterable[Sequence[Any]], headers: dict[str, str]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return Response(out.getvalue(), 200, headers=headers, media_type="text/csv; charset=utf-8")
