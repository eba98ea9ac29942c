"""transparency-dev/merkle's inclusion and consistency probes give the same verdicts here.

The files under merkle/ are the upstream `testdata/inclusion` and `testdata/consistency`
trees, unchanged (README.md says from which commit, and the licence).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from protocol.tlog.errors import MerkleError
from protocol.tlog.merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

HERE = Path(__file__).resolve().parent / "merkle"
INCLUSION = sorted((HERE / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((HERE / "consistency").rglob("*.json"))


def _b(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _hashes(values: list[str] | None) -> list[bytes]:
    return [_b(v) for v in values or []]


def _load(path: Path) -> dict[str, Any]:
    probe: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return probe


def test_the_upstream_probes_are_all_there() -> None:
    assert len(INCLUSION) >= 80
    assert len(CONSISTENCY) >= 90
    verdicts = [_load(p)["wantErr"] for p in INCLUSION + CONSISTENCY]
    assert True in verdicts
    assert False in verdicts


@pytest.mark.parametrize("path", INCLUSION, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_probe(path: Path) -> None:
    p = _load(path)
    args = (p["leafIdx"], p["treeSize"], _b(p["leafHash"]), _hashes(p["proof"]), _b(p["root"]))
    if p["wantErr"]:
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_probe(path: Path) -> None:
    p = _load(path)
    args = (p["size1"], p["size2"], _hashes(p["proof"]), _b(p["root1"]), _b(p["root2"]))
    if p["wantErr"]:
        with pytest.raises(MerkleError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# The RFC 6962 reference leaves behind the upstream "happy path" probes (merkle's
# testonly.LeafInputs): the generated proofs must be the probes' proofs, byte for byte.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]


def test_generated_proofs_equal_the_upstream_happy_paths() -> None:
    tree = MemoryTree([leaf_hash(x) for x in REFERENCE_LEAVES])
    checked = 0
    for path in INCLUSION:
        p = _load(path)
        if p["wantErr"] or p["treeSize"] > tree.size or p["desc"] != "happy path":
            continue
        assert tree.root(p["treeSize"]) == _b(p["root"])
        assert inclusion_proof(tree, p["leafIdx"], p["treeSize"]) == _hashes(p["proof"])
        checked += 1
    for path in CONSISTENCY:
        p = _load(path)
        if p["wantErr"] or p["size2"] > tree.size or p["desc"] != "happy path":
            continue
        assert consistency_proof(tree, p["size1"], p["size2"]) == _hashes(p["proof"])
        checked += 1
    assert checked >= 8


def test_every_generated_proof_verifies_up_to_70_leaves() -> None:
    tree = MemoryTree([leaf_hash(i.to_bytes(4, "big")) for i in range(70)])
    for size in range(1, 71):
        root = tree.root(size)
        for index in range(size):
            verify_inclusion(
                index, size, tree.node(0, index), inclusion_proof(tree, index, size), root
            )
        for old in range(1, size + 1):
            verify_consistency(old, size, consistency_proof(tree, old, size), tree.root(old), root)
