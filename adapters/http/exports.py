"""What the read endpoints share: strict query parsing, minPosition, and CSV for analysts."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from adapters.http.errors import ApiError, validation_details

CSV = "text/csv"


def parse_query(request: Request, query_type: type[Any]) -> Any:
    """The query string as its struct: 422 naming the parameter when it does not fit."""
    try:
        return msgspec.convert(dict(request.query_params), query_type, strict=False)
    except msgspec.ValidationError as error:
        message, details = validation_details(error, "query")
        raise ApiError(422, "validation_error", message, details) from None


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
