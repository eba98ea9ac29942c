"""The log's side of c2sp.org/tlog-witness: ask each witness to cosign a checkpoint.

For each witness with a URL in the policy, POST `<url>/add-checkpoint` with the old
size the witness last cosigned (remembered per witness, 0 at first), the consistency
proof from there, and the log-signed checkpoint. A 409 tells the witness's size (body
`text/x.tlog.size`): the request is made once more from that size. A 200 body is note
signature lines; only a valid cosignature by that witness's key counts. The checkpoint
is published once the valid cosignatures satisfy the policy's quorum. The policy file is
read again when it changes (`PolicyFile`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.errors import PolicyError, TlogError
from protocol.tlog.merkle import NodeSource, consistency_proof
from protocol.tlog.note import NoteSignature, Verifier, format_note, open_note
from protocol.tlog.policy import Witness, WitnessPolicy, parse_policy
from protocol.tlog.proof import encode_hash_lines

LOG = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 5.0
SIZE_CONTENT_TYPE = "text/x.tlog.size"


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: bytes) -> bytes:
    return f"old {old}\n{encode_hash_lines(proof)}\n".encode() + note


@dataclass(frozen=True)
class Cosigned:
    note: bytes  # the checkpoint with the log's signature and every cosignature obtained
    witnesses: frozenset[str]
    quorum: bool


class PolicyFile:
    """The log's tlog-policy file, read again when it changes (a witness moved, one was
    added): a new version is taken only if it parses and still names this log's key;
    otherwise the last good one stays in force and the problem is logged."""

    def __init__(self, path: Path, log_verifier: Verifier) -> None:
        self.path = path
        self.log_verifier = log_verifier
        self._stamp = self._mtime()
        self.policy = self._parse(self.path.read_bytes())

    def _mtime(self) -> int:
        return self.path.stat().st_mtime_ns

    def _parse(self, data: bytes) -> WitnessPolicy:
        policy = parse_policy(data)
        log = policy.log_for(self.log_verifier.name)
        if log is None or log.verifier != self.log_verifier:
            raise PolicyError(f"{self.path} has no log line for this log's key")
        return policy

    def current(self) -> WitnessPolicy:
        try:
            stamp = self._mtime()
            if stamp != self._stamp:
                self._stamp = stamp
                self.policy = self._parse(self.path.read_bytes())
                LOG.warning("witness policy reloaded from %s", self.path)
        except (OSError, TlogError) as exc:
            LOG.error("keeping the previous witness policy: %s", exc)
        return self.policy


class Cosigner:
    """Collects cosignatures for a log's checkpoints from the policy's witnesses."""

    def __init__(
        self,
        policy: WitnessPolicy | PolicyFile,
        log_verifier: Verifier,
        source: NodeSource,
        client: httpx.AsyncClient,
    ) -> None:
        self._policy = policy
        self.log_verifier = log_verifier
        self.source = source
        self.client = client
        self.known_size: dict[str, int] = {}

    @property
    def policy(self) -> WitnessPolicy:
        source = self._policy
        return source.current() if isinstance(source, PolicyFile) else source

    async def _ask(
        self, witness: Witness, checkpoint: Checkpoint, note: bytes
    ) -> NoteSignature | None:
        assert witness.url is not None
        url = witness.url.rstrip("/") + "/add-checkpoint"
        old = self.known_size.get(witness.name, 0)
        for _ in range(2):
            if old > checkpoint.size:
                LOG.error(
                    "witness %s holds size %d above ours %d", witness.name, old, checkpoint.size
                )
                return None
            proof = consistency_proof(self.source, old, checkpoint.size) if old else []
            try:
                response = await self.client.post(
                    url, content=add_checkpoint_body(old, proof, note), timeout=REQUEST_TIMEOUT_S
                )
            except httpx.HTTPError as exc:
                LOG.warning("witness %s unreachable: %s", witness.name, type(exc).__name__)
                return None
            if response.status_code == 409 and response.headers.get("content-type", "").startswith(
                SIZE_CONTENT_TYPE
            ):
                text = response.text.strip()
                if not text.isdigit():
                    return None
                old = int(text)
                self.known_size[witness.name] = old
                continue
            if response.status_code != 200:
                LOG.warning(
                    "witness %s answered %d: %s",
                    witness.name,
                    response.status_code,
                    response.text[:200],
                )
                return None
            try:
                opened = open_note(checkpoint.text + b"\n" + response.content, [witness.verifier])
            except TlogError as exc:
                LOG.warning("witness %s sent no valid cosignature: %s", witness.name, exc)
                return None
            self.known_size[witness.name] = checkpoint.size
            return opened.verified_by(witness.verifier)
        return None

    async def cosign(self, note: bytes) -> Cosigned:
        """Ask every witness at once; the note carries whatever cosignatures came back."""
        signed = open_checkpoint(note, [self.log_verifier])
        checkpoint = signed.checkpoint
        own = signed.note.verified_by(self.log_verifier)
        assert own is not None
        policy = self.policy
        witnesses = [w for w in policy.witnesses.values() if w.url]
        answers = await asyncio.gather(*(self._ask(w, checkpoint, note) for w in witnesses))
        cosignatures = [(w, sig) for w, sig in zip(witnesses, answers, strict=True) if sig]
        names = frozenset(w.name for w, _ in cosignatures)
        full = format_note(checkpoint.text, [own, *(sig for _, sig in cosignatures)])
        return Cosigned(full, names, policy.satisfied(names))
