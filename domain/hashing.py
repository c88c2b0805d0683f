"""The per-task hash chain that makes a task's history tamper-evident.

Each event's ``hash`` is SHA-256 over a canonical encoding of the event's
type and every one of its fields except ``hash`` itself; ``prev_hash`` (one of
those fields) is the hash of the task's previous event, so changing, removing
or reordering any stored event breaks the chain from that point on.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

GENESIS_HASH = "0" * 64

_encoder = msgspec.json.Encoder(order="sorted")


def canonical_bytes(event_type: str, fields: dict[str, Any]) -> bytes:
    """Deterministic bytes of an event: keys sorted, times as ISO 8601, ids as text."""
    body = {name: value for name, value in fields.items() if name != "hash"} if "hash" in fields else fields
    return _encoder.encode({"type": event_type, "fields": body})


def event_hash(event_type: str, fields: dict[str, Any]) -> str:
    """The hex SHA-256 digest of an event's canonical bytes."""
    return hashlib.sha256(canonical_bytes(event_type, fields)).hexdigest()
