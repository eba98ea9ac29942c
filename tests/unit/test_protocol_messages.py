"""MQTT payloads: each type round-trips, and each parser refuses what it must."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pyrage
import pytest

from protocol.errors import MessageError
from protocol.messages import (
    LAST_WILL,
    MAX_ESCROW_BYTES,
    DeviceState,
    EscrowAck,
    EscrowMessage,
    NoticeMessage,
    ResultMessage,
    ResultStatus,
    StatusMessage,
    parse_escrow,
    parse_escrow_ack,
    parse_notice,
    parse_result,
    parse_status,
    printable,
)
from protocol.token import CaseRef, Window
from tests.unit.protocol_world import NOW

EPOCH_KEY = pyrage.x25519.Identity.generate()
ESCROW_KEY = pyrage.x25519.Identity.generate()
ESCROW = EscrowMessage(
    device="porch-1",
    epoch="1780315200-0a1b2c3d",
    start=NOW,
    end=NOW + timedelta(hours=1),
    recipient=str(EPOCH_KEY.to_public()),
    sealed=base64.b64encode(
        pyrage.encrypt(str(EPOCH_KEY).encode(), [ESCROW_KEY.to_public()])
    ).decode(),
)
CASE = CaseRef(
    request_id="req-1",
    docket="2026-MJ-0042",
    authority="demo-district-court",
    document_sha256="ab" * 32,
)
WINDOW = Window(start=NOW - timedelta(hours=3), end=NOW - timedelta(hours=1))


def test_escrow_round_trip_and_the_sealed_key_opens() -> None:
    data = ESCROW.to_bytes()
    assert json.loads(data)["v"] == 1
    got = parse_escrow(data)
    assert got == ESCROW
    opened = pyrage.decrypt(base64.b64decode(got.sealed), [ESCROW_KEY]).decode()
    assert str(pyrage.x25519.Identity.from_str(opened).to_public()) == got.recipient


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(v=2),
        lambda d: d.pop("sealed"),
        lambda d: d.update(extra=1),
        lambda d: d.update(epoch="12"),
        lambda d: d.update(recipient="age1nope"),
        lambda d: d.update(sealed="aGVsbG8="),
        lambda d: d.update(sealed="***"),
        lambda d: d.update(end=d["start"]),
        lambda d: d.update(start="now"),
    ],
)
def test_escrow_refusals(edit: object) -> None:
    doc = json.loads(ESCROW.to_bytes())
    edit(doc)  # type: ignore[operator]
    with pytest.raises(MessageError):
        parse_escrow(json.dumps(doc).encode())


def test_escrow_size_cap() -> None:
    with pytest.raises(MessageError, match="cap"):
        parse_escrow(b" " * (MAX_ESCROW_BYTES + 1))


def test_escrow_ack() -> None:
    ack = EscrowAck(epoch="1780315200-0a1b2c3d")
    assert parse_escrow_ack(ack.to_bytes()) == ack
    for bad in (b'{"epoch":"1780315200-0a1b2c3d"}', b'{"v":1,"epoch":"x"}', b"[]", b"\x00"):
        with pytest.raises(MessageError):
            parse_escrow_ack(bad)
    with pytest.raises(MessageError):
        EscrowAck(epoch="../x").to_bytes()


def test_result_round_trip_and_rules() -> None:
    ok = ResultMessage(jti="tok-1", status=ResultStatus.uploaded, clips=("c1", "c2"))
    assert parse_result(ok.to_bytes()) == ok
    rejected = ResultMessage(
        jti="tok-2",
        status=ResultStatus.rejected,
        reason="stale_seq",
        detail="seq 3 is not above the last accepted 5",
    )
    assert parse_result(rejected.to_bytes()) == rejected
    with pytest.raises(MessageError, match="reason"):
        ResultMessage(jti="tok-2", status=ResultStatus.rejected).to_bytes()
    for bad in (
        {"status": "maybe"},
        {"reason": "Not A Code"},
        {"clips": ["c1", "c1"]},
        {"clips": "c1"},
        {"detail": 5},
    ):
        doc = json.loads(ok.to_bytes())
        doc.update(bad)
        with pytest.raises(MessageError):
            parse_result(json.dumps(doc).encode())


def test_status_and_last_will() -> None:
    assert json.loads(LAST_WILL.to_bytes()) == {"v": 1, "state": "offline"}
    online = StatusMessage(
        state=DeviceState.online,
        health={
            "free_bytes": 123,
            "clock_synchronized": True,
            "camera": "ok",
            "temp_c": 51.5,
            "last_error": None,
        },
    )
    assert parse_status(online.to_bytes()) == online
    with pytest.raises(MessageError, match="reserved"):
        StatusMessage(state=DeviceState.online, health={"v": 2}).to_bytes()
    for bad in (
        b'{"v":1,"state":"asleep"}',
        b'{"v":1,"state":"online","x":{"a":1}}',
        b'{"v":1,"state":"online","Bad Name":1}',
        b'{"v":1}',
    ):
        with pytest.raises(MessageError):
            parse_status(bad)


def test_notice_round_trip_and_rules() -> None:
    notice = NoticeMessage(
        jti="tok-1", basis="warrant", case=CASE, window=WINDOW, clips=("c1",), released_at=NOW
    )
    assert parse_notice(notice.to_bytes()) == notice
    bads: list[dict[str, object]] = [
        {"basis": "voluntary"},
        {"case": {}},
        {"window": {"start": "x", "end": "y"}},
        {"released_at": 5},
    ]
    for bad in bads:
        doc = json.loads(notice.to_bytes())
        doc.update(bad)
        with pytest.raises(MessageError):
            parse_notice(json.dumps(doc).encode())
    naive = NoticeMessage(
        jti="tok-1",
        basis="warrant",
        case=CASE,
        window=WINDOW,
        clips=(),
        released_at=NOW.replace(tzinfo=None),
    )
    with pytest.raises(MessageError, match="naive"):
        naive.to_bytes()


@pytest.mark.parametrize(
    "hidden",
    ["\x1b[2J", "\x9b2J", "\x85", "\u202e", "\u2066", "\u200f", "\u061c", "\u2028", "\ufeff"],
)
def test_text_that_would_display_other_than_it_reads_is_refused(hidden: str) -> None:
    """A docket with a terminal escape (C0 or C1), a bidirectional override or isolate, a
    line separator or a byte-order mark would show an owner or a reviewer something other
    than what it says: every string field refuses it, naming the character. The same
    docket with accented and non-Latin letters is the control that passes."""
    readable = NoticeMessage(
        jti="tok-1", basis="warrant", case=CaseRef(
            request_id="req-1", docket="2026-MJ-0042 é 日本", authority="court",
            document_sha256="ab" * 32,
        ), window=WINDOW, clips=("c1",), released_at=NOW,
    )
    assert parse_notice(readable.to_bytes()) == readable
    doc = json.loads(readable.to_bytes())
    doc["case"]["docket"] = f"2026-MJ-{hidden}0042"
    with pytest.raises(MessageError, match=f"U\\+{ord(hidden[0]):04X}"):
        parse_notice(json.dumps(doc).encode())


def test_printable_makes_what_string_fields_refuse_a_question_mark() -> None:
    """What a party writes from text it did not choose (an error message) then parses."""
    text = "bad \x1b[31mred\x9b \u202eevil\u2069 é"
    cleaned = printable(text, 1024)
    assert cleaned == "bad ?[31mred? ?evil? é"
    result = ResultMessage(jti="tok-1", status=ResultStatus.rejected, reason="malformed",
                           detail=cleaned)
    assert parse_result(result.to_bytes()).detail == cleaned
    assert printable(text, 3) == "bad"[:3]
