"""The hash-chained audit log: every edit, removal, reordering and insertion is named."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloud_stub.domain.audit_chain import (
    GENESIS_HASH,
    AuditChainBroken,
    AuditEntry,
    chain_entry,
    make_entry,
    verify_chain,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def build(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(n):
        prev = chain_entry(
            prev,
            at=T0 + timedelta(seconds=i),
            actor=f"reviewer:{i % 3}",
            action="request.approved" if i % 2 else "request.submitted",
            subject=f"request:{i // 2}",
            detail={"basis": "warrant", "reasons": [{"code": "x", "n": i}], "ok": i % 2 == 0},
        )
        entries.append(prev)
    return entries


def broken_at(entries: list[AuditEntry], **head: Any) -> int:
    with pytest.raises(AuditChainBroken) as info:
        verify_chain(entries, **head)
    assert info.value.code == "audit_chain_broken"
    return info.value.seq


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    entries = build(6)
    report = verify_chain(entries, head_seq=6, head_hash=entries[-1].hash)
    assert (report.entries, report.head_seq, report.head_hash) == (6, 6, entries[-1].hash)


def test_the_first_entry_anchors_to_the_genesis_hash() -> None:
    first = build(1)[0]
    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH
    assert verify_chain([]).head_hash == GENESIS_HASH
    forged_anchor = dataclasses.replace(first, prev_hash="0" * 64)
    assert broken_at([forged_anchor]) == 1


@pytest.mark.parametrize(
    "edit",
    [
        {"actor": "admin:mallory"},
        {"action": "request.denied"},
        {"subject": "request:99"},
        {"at": T0 + timedelta(days=1)},
        {"detail": {"basis": "emergency"}},
    ],
)
def test_an_edited_entry_is_named(edit: dict[str, Any]) -> None:
    entries = build(5)
    entries[2] = dataclasses.replace(entries[2], **edit)
    assert broken_at(entries) == 3


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    # The attacker edits entry 3 and fixes its own hash; entry 4 still links to the old one.
    entries = build(5)
    e = entries[2]
    entries[2] = make_entry(
        seq=e.seq, at=e.at, actor="admin:mallory", action=e.action, subject=e.subject,
        detail=e.detail, prev_hash=e.prev_hash,
    )  # fmt: skip
    assert broken_at(entries) == 4


def test_a_removed_entry_is_named() -> None:
    entries = build(5)
    del entries[1]
    assert broken_at(entries) == 2


def test_reordered_entries_are_named() -> None:
    entries = build(5)
    entries[1], entries[3] = entries[3], entries[1]
    assert broken_at(entries) == 2


def test_an_inserted_entry_is_named() -> None:
    # A forged entry squeezed in as seq 3, later ones renumbered by the attacker.
    entries = build(5)
    forged = make_entry(
        seq=3, at=T0, actor="admin:mallory", action="request.approved", subject="request:1",
        detail={}, prev_hash=entries[1].hash,
    )  # fmt: skip
    renumbered = [dataclasses.replace(e, seq=e.seq + 1) for e in entries[2:]]
    assert broken_at([*entries[:2], forged, *renumbered]) == 4


def test_a_duplicated_entry_is_named() -> None:
    entries = build(3)
    assert broken_at([entries[0], entries[1], entries[1], entries[2]]) == 3


def test_a_removed_tail_is_caught_by_the_recorded_head() -> None:
    entries = build(5)
    head: dict[str, Any] = {"head_seq": 5, "head_hash": entries[-1].hash}
    verify_chain(entries, **head)
    assert broken_at(entries[:3], **head) == 4
    assert broken_at([], **head) == 1


def test_an_appended_entry_beyond_the_head_is_caught() -> None:
    entries = build(5)
    head = {"head_seq": 4, "head_hash": entries[3].hash}
    assert broken_at(entries, **head) == 5


def test_a_head_hash_that_does_not_match_is_caught() -> None:
    entries = build(3)
    assert broken_at(entries, head_seq=3, head_hash="f" * 64) == 3


def test_a_chain_rewritten_from_scratch_is_caught_by_a_published_checkpoint() -> None:
    # A database writer rebuilds the whole chain with entry 2 changed: self-consistent,
    # but entry 2 no longer matches the hash published in last month's report.
    entries = build(4)
    published = {2: entries[1].hash}
    rewritten: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for e in entries:
        actor = "admin:mallory" if e.seq == 2 else e.actor
        prev = chain_entry(
            prev, at=e.at, actor=actor, action=e.action, subject=e.subject, detail=e.detail
        )
        rewritten.append(prev)
    verify_chain(rewritten)
    assert broken_at(rewritten, checkpoints=published) == 2
    assert broken_at(entries[:1], checkpoints=published) == 2


def test_naive_times_from_the_store_hash_as_utc() -> None:
    # SQLite and PostgreSQL "timestamp" columns hand back naive UTC datetimes.
    entries = build(3)
    from_store = [dataclasses.replace(e, at=e.at.replace(tzinfo=None)) for e in entries]
    verify_chain(from_store)


def test_json_round_trip_of_detail_keeps_the_hash() -> None:
    entry = make_entry(
        seq=1, at=T0, actor="a", action="b", subject="c",
        detail={"t": (1, 2), "n": None, "f": 1.5}, prev_hash=GENESIS_HASH,
    )  # fmt: skip
    verify_chain([dataclasses.replace(entry, detail={"t": [1, 2], "n": None, "f": 1.5})])


@pytest.mark.parametrize(
    "bad",
    [
        {"at": datetime(2026, 1, 1)},  # naive
        {"seq": 0},
        {"actor": ""},
        {"subject": "x" * 201},
        {"detail": {"when": T0}},  # not plain JSON
        {"detail": {"x": float("nan")}},
    ],
)
def test_make_entry_refuses_what_cannot_be_chained(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "seq": 1, "at": T0, "actor": "a", "action": "b", "subject": "c", "detail": {},
        "prev_hash": GENESIS_HASH,
    }  # fmt: skip
    fields.update(bad)
    with pytest.raises(ValueError):  # noqa: PT011 - each case names its own problem
        make_entry(**fields)
