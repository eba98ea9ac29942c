"""The signed-note examples of the C2SP spec and of Go's sumdb/note tests, and the
`go.sum database tree` tlog-proof of transparency-dev/incubator, verify here as upstream
says they do (note/vectors.json and proof/ name their origins; README.md the licences)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import NoteError
from protocol.tlog.merkle import leaf_hash, verify_inclusion
from protocol.tlog.note import open_note, parse_note, parse_skey, parse_vkey, sign_note
from protocol.tlog.proof import parse_tlog_proof

HERE = Path(__file__).resolve().parent
VECTORS: dict[str, Any] = json.loads((HERE / "note" / "vectors.json").read_text("utf-8"))
C2SP = VECTORS["c2sp_signed_note"]
GO = VECTORS["go_sumdb_note"]
SUMDB = VECTORS["go_sum_database_tree_proof"]


def test_the_c2sp_example_note_verifies_under_its_vkey() -> None:
    verifier = parse_vkey(C2SP["vkey"])
    assert verifier.vkey == C2SP["vkey"]
    opened = open_note(C2SP["note"].encode(), [verifier])
    assert opened.text == C2SP["text"].encode()
    assert [v for v, _ in opened.verified] == [verifier]


def test_go_vkeys_parse_and_round_trip() -> None:
    for vkey in (GO["peter_vkey"], GO["enoch_vkey"]):
        assert parse_vkey(vkey).vkey == vkey


def test_go_mangled_vkeys_are_refused() -> None:
    vkey = GO["peter_vkey"]
    mangled = list(GO["bad_vkeys"])
    mangled += [
        vkey[i:j]
        for i in range(len(vkey) + 1)
        for j in range(i + 1, len(vkey) + 1)
        if (i, j) != (0, len(vkey))
    ][::7]
    mangled += [vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))]
    for bad in mangled:
        with pytest.raises(NoteError):
            parse_vkey(bad)


def test_go_signer_key_signs_the_expected_note() -> None:
    signer = parse_skey(GO["peter_skey"])
    assert signer.skey == GO["peter_skey"]
    assert signer.verifier.vkey == GO["peter_vkey"]
    assert sign_note(GO["text"].encode(), signer) == GO["signed_by_peter"].encode()


def test_go_open_one_known_one_unknown() -> None:
    peter, enoch = parse_vkey(GO["peter_vkey"]), parse_vkey(GO["enoch_vkey"])
    message = (GO["text"] + "\n" + GO["peter_sig_line"] + GO["enoch_sig_line"]).encode()
    opened = open_note(message, [peter])
    assert opened.text == GO["text"].encode()
    assert [v for v, _ in opened.verified] == [peter]
    assert [s.name for s in opened.unverified] == ["EnochRoot"]
    both = open_note(message, [peter, enoch])
    assert [v for v, _ in both.verified] == [peter, enoch]
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(message, [])


def test_go_open_refuses_a_bad_signature_from_a_known_key() -> None:
    peter = parse_vkey(GO["peter_vkey"])
    line = GO["peter_sig_line"]
    message = (GO["text"] + "\n" + line[:60] + "ABCD" + line[60:]).encode()
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann"):
        open_note(message, [peter])


def test_go_open_refuses_too_many_signatures() -> None:
    peter = parse_vkey(GO["peter_vkey"])
    message = (GO["text"] + "\n" + GO["peter_sig_line"] * 101).encode()
    with pytest.raises(NoteError):
        open_note(message, [peter])


@pytest.mark.parametrize("index", range(6))
def test_go_malformed_notes_are_refused(index: int) -> None:
    with pytest.raises(NoteError):
        parse_note(GO["bad_messages"][index].encode())


def test_go_malformed_note_not_utf8_is_refused() -> None:
    with pytest.raises(NoteError):
        parse_note(bytes.fromhex(GO["bad_message_not_utf8_hex"]))


def _sumdb_proof() -> bytes:
    path: Path = HERE / SUMDB["proof_file"]
    return path.read_bytes()


def test_the_go_sum_database_tree_proof_verifies() -> None:
    proof = parse_tlog_proof(_sumdb_proof())
    log = parse_vkey(SUMDB["log_vkey"])
    opened = open_note(proof.checkpoint, [log])
    checkpoint = Checkpoint.from_text(opened.text)
    assert checkpoint.origin == SUMDB["origin_line"]
    leaf = leaf_hash((HERE / SUMDB["raw_leaf_file"]).read_bytes())
    assert leaf.hex() == SUMDB["leaf_hash_hex"]
    verify_inclusion(proof.index, checkpoint.size, leaf, proof.inclusion, checkpoint.root)
    assert proof.encode() == _sumdb_proof()


def test_the_go_sum_database_tree_proof_fails_as_upstream_says() -> None:
    from protocol.tlog.errors import MerkleError, ProofFormatError

    data = _sumdb_proof()
    proof = parse_tlog_proof(data)
    log = parse_vkey(SUMDB["log_vkey"])
    checkpoint = Checkpoint.from_text(open_note(proof.checkpoint, [log]).text)
    wrong_leaf = bytearray(bytes.fromhex(SUMDB["leaf_hash_hex"]))
    wrong_leaf[0] ^= 0xFF
    with pytest.raises(MerkleError):
        verify_inclusion(
            proof.index, checkpoint.size, bytes(wrong_leaf), proof.inclusion, checkpoint.root
        )
    wrong_key = SUMDB["log_vkey"][:-1] + "9"
    with pytest.raises(NoteError):
        open_note(proof.checkpoint, [parse_vkey(wrong_key)])
    with pytest.raises((NoteError, ProofFormatError)):
        open_note(parse_tlog_proof(data[:-50]).checkpoint, [parse_vkey(SUMDB["log_vkey"])])
