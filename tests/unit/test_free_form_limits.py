"""The shortcut that skips the free-form walk must never let a breach through."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.http.errors import ApiError
from adapters.http.limits import check_free_form, within_free_form_limits
from domain.commands import CreateTask

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(context=st.dictionaries(st.text(max_size=4), json_values, max_size=4),
       max_depth=st.integers(1, 6), max_bytes=st.integers(20, 2_000))
def test_a_body_the_shortcut_passes_never_breaks_a_limit(context: dict, max_depth: int, max_bytes: int) -> None:
    body = msgspec.json.encode({"task": "t", "context": context})
    command = msgspec.json.decode(body, type=CreateTask)
    if within_free_form_limits(body, max_depth, max_bytes):
        check_free_form(command, max_depth, max_bytes)  # must not raise


def test_numbers_that_grow_when_re_encoded_are_still_checked() -> None:
    body = b'{"task":"t","context":{"n":[' + b",".join([b"9e15"] * 40) + b"]}}"
    command = msgspec.json.decode(body, type=CreateTask)
    assert len(msgspec.json.encode(command.context)) > 2 * len(body)
    with pytest.raises(ApiError):
        check_free_form(command, 10, 2 * len(body))
    assert not within_free_form_limits(body, 10, 2 * len(body))
