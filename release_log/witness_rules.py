"""A witness's judgement of an `add-checkpoint` request (c2sp.org/tlog-witness): pure.

Bytes of the request, the log keys the witness trusts and its last cosigned checkpoint
for that origin in; a verdict out: the HTTP status the spec prescribes, or the
checkpoint to cosign. In order:

- 400 the body is not `old <n>`, proof lines, a blank line and a checkpoint note, or
  old size > checkpoint size, or more than 63 proof lines;
- 404 the checkpoint's origin is not a log this witness knows;
- 403 no valid signature by a trusted key for the origin, or a trusted key's signature
  fails;
- 409 old size is not the size the witness last cosigned (body: that size);
- 422 a size-0 checkpoint whose root is not the empty tree's; a proof sent from size 0;
  equal sizes with different roots; a consistency proof that does not verify.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.tlog.checkpoint import Checkpoint, decode_hash, parse_decimal
from protocol.tlog.errors import CheckpointError, MerkleError, NoteError
from protocol.tlog.merkle import EMPTY_ROOT, MAX_PROOF_HASHES, verify_consistency
from protocol.tlog.note import InvalidSignatureError, Verifier, open_note, parse_note

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Stored:
    """The witness's latest cosigned checkpoint for one origin."""

    size: int
    root: bytes


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


@dataclass(frozen=True)
class Accepted:
    checkpoint: Checkpoint
    note: bytes  # the submitted note, as verified
    log_signatures: tuple[str, ...]  # the signature lines by trusted log keys


@dataclass(frozen=True)
class Request:
    old: int
    proof: tuple[bytes, ...]
    note: bytes


def parse_request(body: bytes) -> Request | Refusal:
    if len(body) > MAX_BODY_BYTES:
        return Refusal(400, f"the body is above {MAX_BODY_BYTES} bytes")
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        return Refusal(400, "no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
        if not lines[0].startswith("old "):
            return Refusal(400, "the first line is not old <size>")
        old = parse_decimal(lines[0][4:], "the old size")
        proof = tuple(decode_hash(line, "a proof line") for line in lines[1:])
    except (UnicodeDecodeError, CheckpointError) as exc:
        return Refusal(400, str(exc))
    if len(proof) > MAX_PROOF_HASHES:
        return Refusal(400, f"more than {MAX_PROOF_HASHES} proof lines")
    return Request(old, proof, note)


def judge(
    body: bytes, logs: Mapping[str, Sequence[Verifier]], stored_for: Mapping[str, Stored]
) -> Accepted | Refusal:
    """The verdict on one add-checkpoint body. `logs` maps an origin to its trusted log
    keys; `stored_for` maps an origin to the last cosigned checkpoint (absent: never)."""
    request = parse_request(body)
    if isinstance(request, Refusal):
        return request
    try:
        note = parse_note(request.note)
        checkpoint = Checkpoint.from_text(note.text)
    except (NoteError, CheckpointError) as exc:
        return Refusal(400, f"not a checkpoint note: {exc}")
    keys = logs.get(checkpoint.origin)
    if not keys:
        return Refusal(404, f"unknown log origin {checkpoint.origin[:100]!r}")
    try:
        opened = open_note(request.note, keys)
    except InvalidSignatureError as exc:
        return Refusal(403, str(exc))
    except NoteError as exc:
        return Refusal(403, f"no valid signature by the log: {exc}")
    if request.old > checkpoint.size:
        return Refusal(400, f"old size {request.old} is above the checkpoint's {checkpoint.size}")
    stored = stored_for.get(checkpoint.origin)
    stored_size = 0 if stored is None else stored.size
    if request.old != stored_size:
        return Refusal(409, f"{stored_size}\n")
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        return Refusal(422, "a checkpoint of size 0 must have the empty tree's root")
    if request.old == 0:
        if request.proof:
            return Refusal(422, "a consistency proof from size 0 must be empty")
    else:
        assert stored is not None
        try:
            verify_consistency(
                request.old, checkpoint.size, request.proof, stored.root, checkpoint.root
            )
        except MerkleError as exc:
            return Refusal(422, f"not consistent with the cosigned size {stored.size}: {exc}")
    lines = tuple(sig.line for _, sig in opened.verified)
    return Accepted(checkpoint, request.note, lines)
