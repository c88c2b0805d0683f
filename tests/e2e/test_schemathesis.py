"""schemathesis against the app's own /openapi.json, in-process, every operation, with a valid key.

It fails on any 5xx, any response that breaks the schema (status, content type,
body, headers), and any request the schema forbids that the service accepts
(negative cases). Not checked: schema-valid requests that are refused (422) on
purpose, by a domain rule (escalate never lowers a priority) or because msgspec
takes integers only without a fraction (`1.0` for `1`).

Bounded and repeatable: a few examples per operation and mode, derandomised.
FUZZ_EXAMPLES=500 FUZZ_RANDOM=1 searches harder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from adapters.config import Settings
from app import create_app, operations
from tests.conftest import KEY

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"


def cases() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid input, and with invalid input where it takes any."""
    found = []
    for op in operations():
        found.append((op.method, op.path, GenerationMode.POSITIVE))
        if op.body or op.query or "{" in op.path:
            found.append((op.method, op.path, GenerationMode.NEGATIVE))
    return found


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    database = Path(tmp_path_factory.mktemp("schemathesis")) / "tasks.db"
    app = create_app(Settings(database=f"sqlite:///{database}", bootstrap_key=KEY))
    # The admin key as the schema's bearer scheme, so schemathesis knows it is real (and may drop it
    # to check that a request without it is refused).
    config = SchemathesisConfig.from_dict({"auth": {"openapi": {"bearer": {"bearer": KEY}}}})
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    asgi.shutdown_lifespans()  # stop the app's projection runner and close its database


@pytest.mark.parametrize("method, path, mode", cases(), ids=lambda v: str(v))
def test_every_operation_holds_to_its_schema(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=list(HealthCheck))
    def holds(case: Any) -> None:
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        statuses.append(response.status_code)

    statuses: list[int] = []
    holds()
    assert set(statuses) - {401}, "every request was refused as unauthenticated: the key was not sent"
