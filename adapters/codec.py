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
        originator_id = stored_event.originator_id
        return decode_event(  # type: ignore[no-any-return]
            originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id)),
            stored_event.originator_version, stored_event.topic, stored_event.state,
        )


@cache
def _decoding(topic: str) -> tuple[type, tuple[str, ...], int]:
    """What decoding a topic's events needs: its class, the names of its datetime fields
    and its class version (resolved once per topic, as the library's resolve_topic memoizes)."""
    cls = resolve_topic(topic)
    return cls, tuple(sorted(datetime_fields(cls))), getattr(cls, "class_version", 1)


def decode_event(originator_id: UUID, originator_version: int, topic: str, state: bytes) -> Any:
    """The domain event stored as (id, version, topic, state): what ``to_domain_event`` returns,
    without building a StoredEvent first (the hot read path has the row's columns)."""
    cls, datetimes, class_version = _decoding(topic)
    try:
        fields = _decoder.decode(state)
        for name in datetimes:
            value = fields.get(name)
            if value is not None:
                fields[name] = datetime.fromisoformat(value)
    except (msgspec.DecodeError, ValueError, TypeError) as error:
        raise MapperDeserialisationError(
            f"cannot read event {topic} v{originator_version} of {originator_id}: {error}"
        ) from error
    fields["originator_id"] = originator_id
    fields["originator_version"] = originator_version
    from_version = fields.pop("class_version", 1)
    while from_version < class_version:
        getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(fields)
        from_version += 1
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", fields)
    return event
