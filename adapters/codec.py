"""How events are stored: msgspec JSON, with types restored from the event class.

The library's default JSON transcoder tags datetimes and UUIDs as
``{"_type_": …, "_data_": …}`` objects and decodes any such object anywhere
in the payload — including inside a client's free-form ``context`` — which
would let a client change its own data's type or make a task unreadable.
This mapper writes plain JSON and restores only the fields the event class
declares as datetimes; client JSON always comes back exactly as sent.
"""

from __future__ import annotations

import typing
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


@cache
def datetime_fields(cls: type) -> frozenset[str]:
    """Names of the top-level fields that an event class declares as datetimes."""
    hints = typing.get_type_hints(cls)
    return frozenset(
        name for name, hint in hints.items()
        if hint is datetime or datetime in typing.get_args(hint)
    )


@cache
def _class_facts(cls: type) -> tuple[str, int]:
    """An event class's topic and class version."""
    return get_topic(cls), getattr(cls, "class_version", 1)


class EventMapper(Mapper[UUID]):
    """Domain events to stored events and back, as plain msgspec JSON."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        topic, class_version = _class_facts(type(domain_event))
        if class_version > 1:
            state["class_version"] = class_version
        # StoredEvent's fields, set as its frozen-dataclass __init__ would, without its
        # object.__setattr__ per field (twice per create on the writer thread).
        stored = object.__new__(StoredEvent)
        object.__setattr__(stored, "__dict__", {
            "originator_id": originator_id, "originator_version": originator_version,
            "topic": topic, "state": _encoder.encode(state),
        })
        return stored

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        cls = resolve_topic(stored_event.topic)
        try:
            state = _decoder.decode(stored_event.state)
            for name in datetime_fields(cls) & state.keys():
                if state[name] is not None:
                    state[name] = datetime.fromisoformat(state[name])
        except (msgspec.DecodeError, ValueError, TypeError) as error:
            raise MapperDeserialisationError(
                f"cannot read event {stored_event.topic} v{stored_event.originator_version} "
                f"of {stored_event.originator_id}: {error}"
            ) from error
        originator_id = stored_event.originator_id
        state["originator_id"] = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
        state["originator_version"] = stored_event.originator_version
        from_version = state.pop("class_version", 1)
        while from_version < getattr(cls, "class_version", 1):
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event  # type: ignore[no-any-return]
