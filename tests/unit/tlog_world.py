"""An in-memory release log for protocol tests: a log key, three witness keys, a 2-of-3
tlog-policy, and the bundles a service would deliver. Seeded keys, nothing random."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.tlog.bundle import build_bundle
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.merkle import MemoryTree, leaf_hash
from protocol.tlog.note import NoteSignature, SignatureType, Signer, format_note, parse_note
from protocol.tlog.policy import WitnessPolicy, parse_policy

ORIGIN = "log.sealed-doorbell.example/releases"
WITNESS_NAMES = ("witness.example/w1", "witness.example/w2", "witness.example/w3")
COSIGN_TIME = 1780315200


def seeded(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def log_signer(origin: str = ORIGIN, seed: str = "log") -> Signer:
    return Signer(origin, SignatureType.ed25519, seeded(seed))


def witness_signers() -> list[Signer]:
    return [
        Signer(name, SignatureType.cosignature_v1, seeded(f"witness-{i}"))
        for i, name in enumerate(WITNESS_NAMES, start=1)
    ]


def policy_text(log: Signer, witnesses: Sequence[Signer], quorum: int = 2) -> bytes:
    lines = [f"log {log.verifier.vkey}"]
    lines += [f"witness w{i} {w.verifier.vkey}" for i, w in enumerate(witnesses, start=1)]
    names = " ".join(f"w{i}" for i in range(1, len(witnesses) + 1))
    lines += [f"group all-witnesses {quorum} {names}", "quorum all-witnesses"]
    return ("\n".join(lines) + "\n").encode()


@dataclass
class LogWorld:
    log: Signer = field(default_factory=log_signer)
    witnesses: list[Signer] = field(default_factory=witness_signers)
    tree: MemoryTree = field(default_factory=MemoryTree)
    entries: list[bytes] = field(default_factory=list)

    @property
    def policy(self) -> WitnessPolicy:
        return parse_policy(policy_text(self.log, self.witnesses))

    def append(self, entry: bytes) -> int:
        self.entries.append(entry)
        self.tree.append_hash(leaf_hash(entry))
        return len(self.entries) - 1

    def fill(self, count: int) -> None:
        for i in range(count):
            self.append(b'{"filler":%d}' % i)

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        size = self.tree.size if size is None else size
        return Checkpoint(self.log.name, size, self.tree.root(size))

    def cosigned(
        self, checkpoint: Checkpoint, *, cosigners: int = 2, log: Signer | None = None
    ) -> bytes:
        """The checkpoint note signed by the log and the first `cosigners` witnesses."""
        text = checkpoint.text
        signer = log or self.log
        sigs = [NoteSignature(signer.name, signer.key_id, signer.sign(text))]
        for w in self.witnesses[:cosigners]:
            raw = w.sign(text, timestamp=COSIGN_TIME)
            sigs.append(NoteSignature(w.name, w.key_id, raw))
        return format_note(text, sigs)

    def bundle(
        self,
        index: int,
        *,
        stored_size: int,
        size: int | None = None,
        cosigners: int = 2,
        entry: bytes | None = None,
        note: bytes | None = None,
    ) -> bytes:
        size = self.tree.size if size is None else size
        cp_note = note or self.cosigned(self.checkpoint(size), cosigners=cosigners)
        return build_bundle(
            self.tree,
            entry=self.entries[index] if entry is None else entry,
            index=index,
            size=size,
            checkpoint_note=cp_note,
            stored_size=stored_size,
        ).encode()


def strip_signatures(note: bytes, keep: int) -> bytes:
    parsed = parse_note(note)
    return format_note(parsed.text, parsed.signatures[:keep])
