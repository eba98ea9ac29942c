"""tlog-policy, cosignature/v1, tiles and the release statement: parse, refuse, round-trip."""

from __future__ import annotations

import base64

import pytest

from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.errors import (
    CheckpointError,
    NoteError,
    PolicyError,
    StatementError,
    TileError,
)
from protocol.tlog.merkle import MemoryTree, consistency_proof, inclusion_proof, leaf_hash
from protocol.tlog.note import SignatureType, Signer, cosignature_message, open_note
from protocol.tlog.policy import parse_policy
from protocol.tlog.statement import MAX_STATEMENT_BYTES, parse_statement, statement_for
from protocol.tlog.tiles import (
    TileNodes,
    TileRef,
    decode_bundle,
    encode_bundle,
    encode_index,
    parse_tile_path,
    tiles_for_size,
)
from tests.unit.protocol_world import make_world
from tests.unit.tlog_world import LogWorld, log_signer, policy_text, seeded, witness_signers


def test_policy_quorum_counts_groups_of_groups() -> None:
    log = log_signer()
    w = witness_signers()
    x = [Signer(f"x.example/{i}", SignatureType.cosignature_v1, seeded(f"x{i}")) for i in range(3)]
    text = (
        f"# comment\nlog {log.verifier.vkey} https://log.example/\n\n"
        + "".join(f"witness W{i}\t{s.verifier.vkey}\n" for i, s in enumerate(w))
        + "".join(f"witness X{i} {s.verifier.vkey}\n" for i, s in enumerate(x))
        + "group W 2 W0 W1 W2\ngroup X any X0 X1 X2\ngroup both all W X\nquorum both\n"
    )
    policy = parse_policy(text.encode())
    assert policy.logs[0].url == "https://log.example/"
    assert policy.satisfied({"W0", "W2", "X1"})
    assert not policy.satisfied({"W0", "X1"})
    assert not policy.satisfied({"W0", "W1", "W2"})
    assert parse_policy(policy.encode().encode()).satisfied({"W0", "W1", "X2"})


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        ("", "no quorum"),
        ("quorum nobody\n", "not defined above"),
        ("group g 4 w1 w2 w3\nquorum g\n", "threshold"),
        ("group g 0 w1\nquorum g\n", "threshold"),
        ("group g 1 w1 w1\nquorum g\n", "twice"),
        ("quorum w1\nquorum w2\n", "second quorum"),
        ("frobnicate\nquorum none\n", "unknown keyword"),
        ("quorum none\x01\n", "control byte"),
    ],
)
def test_bad_policies_are_refused(tail: str, problem: str) -> None:
    head = policy_text(log_signer(), witness_signers()).decode().rsplit("group", 1)[0]
    with pytest.raises(PolicyError, match=problem):
        parse_policy((head + tail).encode())


def test_policy_refuses_a_witness_key_of_the_log_type_and_duplicates() -> None:
    log = log_signer()
    with pytest.raises(PolicyError, match="signature type"):
        parse_policy(f"witness w {log.verifier.vkey}\nquorum w\n".encode())
    w = witness_signers()[0]
    dup = f"witness a {w.verifier.vkey}\nwitness b {w.verifier.vkey}\nquorum a\n"
    with pytest.raises(PolicyError, match="duplicate"):
        parse_policy(dup.encode())


def test_a_cosignature_signs_the_cosignature_v1_message() -> None:
    checkpoint = Checkpoint("example.com/log", 7, bytes(range(32)))
    witness = witness_signers()[0]
    raw = witness.sign(checkpoint.text, timestamp=1679315147)
    assert raw[:8] == (1679315147).to_bytes(8, "big")
    witness.private_key.public_key().verify(
        raw[8:], b"cosignature/v1\ntime 1679315147\n" + checkpoint.text
    )
    assert cosignature_message(b"x\n", 5) == b"cosignature/v1\ntime 5\nx\n"
    assert witness.verifier.vkey.split("+")[2].startswith(base64.b64encode(b"\x04").decode()[:1])
    with pytest.raises(NoteError):
        witness.sign(checkpoint.text)


def test_the_cosignature_example_key_id_follows_the_spec() -> None:
    # tlog-cosignature: key ID = SHA-256(name || "\n" || 0x04 || key)[:4]
    import hashlib

    w = witness_signers()[1]
    expected = hashlib.sha256(w.name.encode() + b"\n\x04" + w.verifier.public_bytes).digest()[:4]
    assert w.key_id.to_bytes(4, "big") == expected


def test_checkpoint_parsing() -> None:
    cp = Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert cp.text == (
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert Checkpoint.from_text(cp.text + b"ext\n").extensions == ("ext",)
    for bad in (
        b"o\n012\n" + cp.text.split(b"\n")[2] + b"\n",
        b"o\n1\n",
        b"o\n1\nAAAA\n",
        b"o\n-1\nx\n",
        b"o\n1\n" + cp.text.split(b"\n")[2] + b"\n\n",
    ):
        with pytest.raises(CheckpointError):
            Checkpoint.from_text(bad)


def test_open_checkpoint_ignores_unknown_signatures() -> None:
    log = LogWorld()
    log.fill(3)
    note = log.cosigned(log.checkpoint(), cosigners=3)
    signed = open_checkpoint(note, [log.log.verifier])
    assert signed.checkpoint == log.checkpoint()
    assert len(signed.note.unverified) == 3
    with pytest.raises(NoteError):
        open_note(note, [witness_signers()[0].verifier, log_signer(seed="x").verifier][1:])


def test_tile_paths() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(5) == "005"
    ref = parse_tile_path("tile/1/x001/x234/067.p/17")
    assert ref == TileRef(1, 1234067, 17)
    assert ref.path == "tile/1/x001/x234/067.p/17"
    assert parse_tile_path("tile/entries/000") == TileRef(None, 0)
    for bad in (
        "tile/01/000",
        "tile/1/1234",
        "tile/1/x000/005",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/64/000",
        "tiles/0/000",
        "tile/0/x1/000",
    ):
        with pytest.raises(TileError):
            parse_tile_path(bad)


def test_tiles_for_size_matches_the_spec_example() -> None:
    refs = list(tiles_for_size(70000))
    assert sum(1 for r in refs if r.level == 0 and r.width == 256) == 273
    assert TileRef(0, 273, 112) in refs
    assert TileRef(1, 0) in refs
    assert TileRef(1, 1, 17) in refs
    assert TileRef(2, 0, 1) in refs
    assert list(tiles_for_size(256)) == [TileRef(0, 0), TileRef(1, 0, 1)]


def test_proofs_from_tiles_equal_proofs_from_the_tree() -> None:
    tree = MemoryTree([leaf_hash(i.to_bytes(4, "big")) for i in range(70000)])
    fetched: list[TileRef] = []

    def fetch(ref: TileRef) -> bytes:
        fetched.append(ref)
        assert ref.level is not None
        start = ref.index * 256
        return b"".join(tree.node(8 * ref.level, start + i) for i in range(ref.width))

    tiles = TileNodes(70000, fetch)
    for index in (0, 255, 256, 65535, 65536, 69999):
        assert inclusion_proof(tiles, index, 70000) == inclusion_proof(tree, index, 70000)
    for old in (1, 256, 4097, 65536, 69999):
        assert consistency_proof(tiles, old, 70000) == consistency_proof(tree, old, 70000)
    assert len(fetched) == len(set(fetched))


def test_entry_bundles() -> None:
    entries = [b"", b"a", b"x" * 300]
    assert decode_bundle(encode_bundle(entries), 3) == entries
    with pytest.raises(TileError):
        decode_bundle(encode_bundle(entries) + b"\x00", 3)
    with pytest.raises(TileError):
        decode_bundle(encode_bundle(entries)[:-1], 3)
    with pytest.raises(TileError):
        encode_bundle([b"x" * 65536])


def test_statements_are_canonical_and_strict() -> None:
    world = make_world()
    identity = seeded("device-identity").public_key()
    claims = world.claims()
    token = world.token(claims)
    statement = statement_for(token, claims, identity)
    data = statement.encode()
    assert parse_statement(data) == statement
    assert statement.court == "demo-district-court"
    for private in (b"2026-MJ-0042", b"porch-1", b"req-1"):
        assert private not in data
    pres = statement_for(token, world.preservation_claims(), identity)
    assert parse_statement(pres.encode()).court is None
    import json

    doc = json.loads(data)
    for bad in (
        data.replace(b":", b": ", 1),  # not canonical
        json.dumps({**doc, "name": "x"}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**doc, "v": 2}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**doc, "seq": -1}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(
            {**doc, "device_tag": "AB" * 32}, sort_keys=True, separators=(",", ":")
        ).encode(),
        b"[]",
        b" " * (MAX_STATEMENT_BYTES + 1),
    ):
        with pytest.raises(StatementError):
            parse_statement(bad)
