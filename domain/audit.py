"""Checking the log: each task's hash chain, and the whole log against a checkpoint.

Pure functions over ``Entry`` values (one stored event each, as JSON builtins),
so the same checks run on the database and on an NDJSON export, offline.

- A task's chain: every event's ``hash`` is recomputed from its fields, each
  ``prev_hash`` must be the previous version's ``hash``, and the versions must
  run 1, 2, 3… in log order. What breaks is named: which task and version was
  modified, which is missing, inserted or reordered.
- A checkpoint: a running SHA-256 over the ordered ``(position, task, version,
  hash)`` lines up to a position, with the event count and each task's head
  (version and hash) then. Checked later, it tells whether anything up to that
  position was rewritten, removed (also the newest events: truncation) or added.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import msgspec

from domain.hashing import GENESIS_HASH, event_hash

DIGEST_ALGORITHM = "sha256-lines-v1"
SIGNATURE_ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class Entry:
    """One stored event: where it sits, and its fields as JSON builtins (``None`` if unreadable)."""

    position: int
    task_id: str
    version: int
    type: str
    tenant: str | None
    fields: dict[str, Any] | None

    @property
    def hash(self) -> str | None:
        return None if self.fields is None else self.fields.get("hash")

    @property
    def prev_hash(self) -> str | None:
        return None if self.fields is None else self.fields.get("prev_hash")

    def hash_as(self, version: int) -> str | None:
        """The hash this event's fields give if it were the given version of its task."""
        if self.fields is None:
            return None
        return event_hash(self.type, {**self.fields, "originator_version": version})


class Finding(msgspec.Struct, rename="camel", kw_only=True):
    """One thing that does not hold, named precisely."""

    kind: str  # modified | missing | inserted | reordered | broken_link | truncated | added | checkpoint
    message: str
    task_id: str | None = None
    version: int | None = None
    position: int | None = None


class Head(msgspec.Struct, rename="camel"):
    version: int
    hash: str


class Signature(msgspec.Struct, rename="camel"):
    algorithm: str
    value: str


class Checkpoint(msgspec.Struct, rename="camel", kw_only=True):
    """A digest of the log up to a position, to be kept somewhere the database's writers cannot reach."""

    position: int
    event_count: int
    root_digest: str
    algorithm: str = DIGEST_ALGORITHM
    tenant: str | None = None
    created_at: str | None = None
    heads: dict[str, Head] | None = None
    signature: Signature | None = None


class Report(msgspec.Struct, rename="camel", kw_only=True):
    ok: bool
    events: int
    tasks: int
    findings: list[Finding]
    checkpoint_position: int | None = None


# --- one task's chain ----------------------------------------------------------------


def verify_chains(entries: Iterable[Entry]) -> list[Finding]:
    """Every task's chain checked; the findings in task order, then version order."""
    by_task: dict[str, list[Entry]] = {}
    for entry in entries:
        by_task.setdefault(entry.task_id, []).append(entry)
    findings: list[Finding] = []
    for task_id, events in by_task.items():
        findings.extend(_verify_task(task_id, sorted(events, key=lambda e: (e.version, e.position))))
    return findings


def _verify_task(task_id: str, slots: list[Entry]) -> list[Finding]:
    found: list[Finding] = []
    top = max(e.version for e in slots) + len(slots)
    # The version each stored event really is: the one its own hash verifies at.
    claimed: list[int | None] = [_claimed_version(e, top) for e in slots]
    for entry in slots:
        if entry.fields is None:
            found.append(Finding(kind="modified", task_id=task_id, version=entry.version, position=entry.position,
                                 message=f"{task_id} v{entry.version} cannot be read: its stored data was changed"))
    genuine = sorted({v for v in claimed if v is not None})
    unreadable = {e.version for e in slots if e.fields is None}  # already named as modified
    gaps = [v for v in range(1, (genuine[-1] if genuine else 0) + 1) if v not in genuine and v not in unreadable]
    for index, (entry, real) in enumerate(zip(slots, claimed)):
        if entry.fields is None:
            continue
        if real is None:
            before = max((v for v in claimed[:index] if v is not None), default=0)
            after = min((v for v in claimed[index + 1:] if v is not None), default=None)
            if after is not None and after == before + 1:
                found.append(Finding(kind="inserted", task_id=task_id, version=entry.version, position=entry.position,
                                     message=f"{task_id} v{entry.version} ({entry.type}) is not part of the chain: "
                                             f"it was inserted between v{before} and v{after}"))
            else:
                version = before + 1 if before + 1 in gaps else entry.version
                if version in gaps:
                    gaps.remove(version)
                found.append(Finding(kind="modified", task_id=task_id, version=version, position=entry.position,
                                     message=f"{task_id} v{version} ({entry.type}) was modified: its hash does not "
                                             "match its fields"))
        elif real != entry.version:
            found.append(Finding(kind="reordered", task_id=task_id, version=real, position=entry.position,
                                 message=f"{task_id} v{real} ({entry.type}) is stored as v{entry.version}: "
                                         "the events were reordered or renumbered"))
    for version in gaps:
        found.append(Finding(kind="missing", task_id=task_id, version=version,
                             message=f"{task_id} v{version} is missing: the chain skips from "
                                     f"v{version - 1} to a later version" if version > 1
                             else f"{task_id} v1 (its creation) is missing"))
    found.extend(_links(task_id, slots, claimed))
    found.extend(_log_order(task_id, slots, claimed))
    return found


def _claimed_version(entry: Entry, top: int) -> int | None:
    if entry.fields is None:
        return None
    if entry.hash_as(entry.version) == entry.hash:
        return entry.version
    return next((v for v in range(1, top + 1) if v != entry.version and entry.hash_as(v) == entry.hash), None)


def _links(task_id: str, slots: list[Entry], claimed: list[int | None]) -> list[Finding]:
    """prev_hash links between consecutive genuine versions that nothing else explains."""
    by_version = {v: e for e, v in zip(slots, claimed) if v is not None}
    found = []
    for version, entry in sorted(by_version.items()):
        previous = by_version.get(version - 1)
        if version > 1 and previous is None:  # the previous version is missing or modified: already reported
            continue
        expected = GENESIS_HASH if previous is None else previous.hash
        if entry.prev_hash != expected:
            found.append(Finding(kind="broken_link", task_id=task_id, version=version, position=entry.position,
                                 message=f"{task_id} v{version}'s prevHash is not v{version - 1}'s hash: "
                                         f"v{version - 1} or v{version} was replaced and its hash recomputed"
                                 if version > 1 else f"{task_id} v1's prevHash is not the genesis hash"))
    return found


def _log_order(task_id: str, slots: list[Entry], claimed: list[int | None]) -> list[Finding]:
    """Versions must appear in the log in order; rows moved to other positions are reordering."""
    found = []
    for (earlier, real), (later, _) in pairwise(zip(slots, claimed, strict=True)):
        if earlier.position > later.position and real == earlier.version:
            found.append(Finding(kind="reordered", task_id=task_id, version=later.version, position=later.position,
                                 message=f"{task_id} v{later.version} sits at position {later.position}, before "
                                         f"v{earlier.version} at {earlier.position}: the log was reordered"))
    return found


# --- the checkpoint ------------------------------------------------------------------


def _line(entry: Entry) -> bytes:
    return f"{entry.position} {entry.task_id} {entry.version} {entry.hash}\n".encode()


def in_scope(entries: Iterable[Entry], position: int, tenant: str | None) -> list[Entry]:
    """The events a checkpoint covers, in log order."""
    chosen = [e for e in entries if e.position <= position and (tenant is None or e.tenant == tenant)]
    return sorted(chosen, key=lambda e: e.position)


def make_checkpoint(entries: Iterable[Entry], position: int, *, tenant: str | None = None,
                    created_at: str | None = None, with_heads: bool = True, key: bytes | None = None) -> Checkpoint:
    """The digest of the log (or one tenant's part of it) up to a position."""
    scope = in_scope(entries, position, tenant)
    digest = hashlib.sha256()
    heads: dict[str, Head] = {}
    for entry in scope:
        digest.update(_line(entry))
        head = heads.get(entry.task_id)
        if head is None or entry.version > head.version:
            heads[entry.task_id] = Head(entry.version, entry.hash or "")
    checkpoint = Checkpoint(position=position, event_count=len(scope), root_digest=digest.hexdigest(),
                            tenant=tenant, created_at=created_at, heads=heads if with_heads else None)
    return sign(checkpoint, key) if key else checkpoint


def _signed_bytes(checkpoint: Checkpoint) -> bytes:
    unsigned = msgspec.structs.replace(checkpoint, signature=None)
    return msgspec.json.encode(msgspec.to_builtins(unsigned), order="sorted")


def sign(checkpoint: Checkpoint, key: bytes) -> Checkpoint:
    value = hmac.new(key, _signed_bytes(checkpoint), hashlib.sha256).hexdigest()
    return msgspec.structs.replace(checkpoint, signature=Signature(SIGNATURE_ALGORITHM, value))


def verify_checkpoint(entries: Sequence[Entry], checkpoint: Checkpoint, key: bytes | None = None) -> list[Finding]:
    """What changed in the log up to the checkpoint's position since it was taken."""
    found = _signature_findings(checkpoint, key)
    scope = in_scope(entries, checkpoint.position, checkpoint.tenant)
    now = make_checkpoint(scope, checkpoint.position, tenant=checkpoint.tenant)
    last = max((e.position for e in entries if checkpoint.tenant is None or e.tenant == checkpoint.tenant), default=0)
    if checkpoint.event_count and last < checkpoint.position and now.event_count < checkpoint.event_count:
        found.append(Finding(kind="truncated", position=last,
                             message=f"the log ends at position {last}, before the checkpoint's position "
                                     f"{checkpoint.position}: its newest events were deleted"))
    if now.root_digest == checkpoint.root_digest and now.event_count == checkpoint.event_count:
        return found
    specific = [] if checkpoint.heads is None else _against_heads(scope, checkpoint.heads, checkpoint.position)
    found.extend(specific)
    if not specific:
        found.append(Finding(kind="checkpoint", message=(
            f"the log up to position {checkpoint.position} is not what the checkpoint recorded "
            f"({now.event_count} events now, {checkpoint.event_count} then, and the digest differs)")))
    return found


def _against_heads(scope: list[Entry], heads: dict[str, Head], position: int) -> list[Finding]:
    found: list[Finding] = []
    current: dict[str, dict[int, Entry]] = {}
    for entry in scope:
        current.setdefault(entry.task_id, {})[entry.version] = entry
    for task_id, head in heads.items():
        versions = current.get(task_id, {})
        newest = max(versions, default=0)
        if newest < head.version:
            gone = (f"v{newest + 1} existed at the checkpoint and is gone" if newest + 1 == head.version
                    else f"v{newest + 1}..v{head.version} existed at the checkpoint and are gone")
            found.append(Finding(kind="truncated", task_id=task_id, version=newest + 1,
                                 message=f"{task_id} {gone}: the task's newest events were deleted"))
        elif (at_head := versions.get(head.version)) is not None and at_head.hash != head.hash:
            found.append(Finding(kind="modified", task_id=task_id, version=head.version, position=at_head.position,
                                 message=f"{task_id} v{head.version} is not the event the checkpoint recorded "
                                         "(its hash differs): the chain was rewritten"))
    for task_id, versions in current.items():
        head_version = heads[task_id].version if task_id in heads else 0
        for version, entry in sorted(versions.items()):
            if version > head_version:
                found.append(Finding(kind="added", task_id=task_id, version=version, position=entry.position,
                                     message=f"{task_id} v{version} sits at position {entry.position}, within the "
                                             f"checkpoint (≤ {position}), but was not there when it was taken"))
    return found


def _signature_findings(checkpoint: Checkpoint, key: bytes | None) -> list[Finding]:
    if checkpoint.signature is None or key is None:
        return []
    expected = sign(checkpoint, key).signature
    assert expected is not None
    if not hmac.compare_digest(expected.value, checkpoint.signature.value):
        return [Finding(kind="checkpoint", message="the checkpoint's signature does not match: "
                                                   "it was altered, or signed with another key")]
    return []


def verify(entries: Sequence[Entry], checkpoint: Checkpoint | None = None, key: bytes | None = None) -> Report:
    """The whole check: every chain, and the log against a saved checkpoint if there is one."""
    findings = verify_chains(entries)
    if checkpoint is not None:
        known = {(f.task_id, f.version) for f in findings}
        for finding in verify_checkpoint(entries, checkpoint, key):
            generic = finding.kind == "checkpoint" and finding.task_id is None and "digest" in finding.message
            if (finding.task_id, finding.version) in known or (generic and findings):
                continue  # already named precisely by the chain check
            findings.append(finding)
    return Report(ok=not findings, events=len(entries), tasks=len({e.task_id for e in entries}),
                  findings=findings, checkpoint_position=None if checkpoint is None else checkpoint.position)
