"""The hash-chained audit log, as pure functions over entries.

Every state change of a request (submitted, refused, approved, denied, signed,
released, uploaded...) is one `AuditEntry`. Each entry's ``hash`` is the SHA-256 of the
canonical JSON of its content and the previous entry's hash; the first entry links to
the fixed `GENESIS_HASH`. Sequence numbers start at 1 and have no gaps. So an edited
entry no longer matches its hash, and a removed, reordered or inserted entry breaks a
sequence number or a ``prev_hash`` link; `verify_chain` names the first broken entry.

An unkeyed chain cannot stop someone who rewrites *every* row after the one they edit
and the stored head; against that, publish the head (the transparency report carries
it) and pass earlier published heads back as ``checkpoints``. The store persists the
entries (cloud_stub/store/audit_log.py); nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from cloud_stub.errors import HostileInputError
from protocol.keys import canonical_json

GENESIS_HASH = hashlib.sha256(b"sealed-doorbell/audit/genesis/v1").hexdigest()
_DOMAIN = b"sealed-doorbell/audit/v1\n"
MAX_FIELD = 200  # characters of actor, action, subject (the store's column width)


class AuditChainBroken(HostileInputError):
    """The stored chain was altered. ``seq`` is the first broken position (1-based)."""

    code = "audit_chain_broken"

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"audit chain broken at entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def _frozen(detail: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(detail))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the chain."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """A verified chain: how many entries and its head (publish the head)."""

    entries: int
    head_seq: int
    head_hash: str


def _instant(at: datetime) -> str:
    # Stores may hand back naive UTC datetimes; both spellings hash the same.
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """The hash that links an entry. Raises TypeError/ValueError when ``detail`` is not
    plain JSON (strings, numbers, booleans, null, lists, objects with string keys)."""
    content = {
        "v": 1,
        "seq": seq,
        "at": _instant(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "detail": dict(detail),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_DOMAIN + canonical_json(content)).hexdigest()


def make_entry(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> AuditEntry:
    """A new entry linked to ``prev_hash``.

    Raises ValueError for a naive ``at``, a sequence number below 1, an over-long or
    empty actor/action/subject, or a ``detail`` that is not plain JSON.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit time must be an aware datetime")
    if seq < 1:
        raise ValueError("audit sequence numbers start at 1")
    for name, value in (("actor", actor), ("action", action), ("subject", subject)):
        if not value or len(value) > MAX_FIELD:
            raise ValueError(f"audit {name} must be 1..{MAX_FIELD} characters")
    try:
        digest = entry_hash(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
            prev_hash=prev_hash,
        )
    except TypeError as exc:
        raise ValueError(f"audit detail must be plain JSON: {exc}") from None
    return AuditEntry(
        seq=seq,
        at=at.astimezone(UTC),
        actor=actor,
        action=action,
        subject=subject,
        detail=_frozen(detail),
        prev_hash=prev_hash,
        hash=digest,
    )


def chain_entry(
    prev: AuditEntry | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any],
) -> AuditEntry:
    """The entry that follows ``prev`` (or the first one, when ``prev`` is None).

    Raises ValueError as `make_entry` does.
    """
    return make_entry(
        seq=1 if prev is None else prev.seq + 1,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        detail=detail,
        prev_hash=GENESIS_HASH if prev is None else prev.hash,
    )


def verify_chain(
    entries: Iterable[AuditEntry],
    *,
    head_seq: int | None = None,
    head_hash: str | None = None,
    checkpoints: Mapping[int, str] | None = None,
) -> ChainReport:
    """Check every link, in the order given (the store's ``seq`` order).

    ``head_seq``/``head_hash``, when given, are the head recorded apart from the rows
    (a removed tail is otherwise invisible); ``checkpoints`` maps sequence numbers to
    hashes published earlier (a chain rewritten from that point on is otherwise
    self-consistent).

    Raises `AuditChainBroken` naming the first entry that is out of sequence (removed,
    reordered or inserted), whose ``prev_hash`` does not link to its predecessor, whose
    content no longer matches its hash (edited), or that differs from a checkpoint; or
    naming the head when the chain ends before or after it.
    """
    expected_seq, prev = 1, GENESIS_HASH
    count = 0
    for entry in entries:
        if entry.seq != expected_seq:
            raise AuditChainBroken(
                expected_seq,
                f"found sequence number {entry.seq} where {expected_seq} belongs "
                "(an entry was removed, reordered or inserted)",
            )
        if entry.prev_hash != prev:
            raise AuditChainBroken(
                entry.seq, "prev_hash does not link to the entry before (inserted or replaced)"
            )
        try:
            digest = entry_hash(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                subject=entry.subject,
                detail=entry.detail,
                prev_hash=entry.prev_hash,
            )
        except (TypeError, ValueError) as exc:
            raise AuditChainBroken(entry.seq, f"content is not hashable JSON: {exc}") from None
        if digest != entry.hash:
            raise AuditChainBroken(entry.seq, "content does not match its hash (edited)")
        if checkpoints is not None and checkpoints.get(entry.seq, digest) != digest:
            raise AuditChainBroken(
                entry.seq, "hash differs from the published checkpoint (chain rewritten)"
            )
        prev = digest
        expected_seq += 1
        count += 1
    last_seq = expected_seq - 1
    if checkpoints is not None:
        beyond = [s for s in checkpoints if s > last_seq]
        if beyond:
            raise AuditChainBroken(
                last_seq + 1, f"the chain ends before published checkpoint {min(beyond)}"
            )
    if head_seq is not None and head_seq != last_seq:
        raise AuditChainBroken(
            min(head_seq, last_seq) + 1,
            f"the recorded head is entry {head_seq} but the chain ends at {last_seq} "
            "(entries removed from, or added to, the end)",
        )
    if head_hash is not None and head_hash != prev:
        raise AuditChainBroken(last_seq, "the last entry's hash differs from the recorded head")
    return ChainReport(entries=count, head_seq=last_seq, head_hash=prev)
