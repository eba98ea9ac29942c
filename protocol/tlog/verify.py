"""The doorbell's check of a token's release-log proof: a pure function of bytes and keys.

A token is acted on only if its release statement is in the public log, in a checkpoint
the log signed and a quorum of witnesses cosigned, consistent with the checkpoint the
doorbell already holds. The proof bundle that travels with the token
(`protocol.tlog.bundle`) holds a c2sp.org/tlog-proof whose `extra` is the release
statement, and a consistency proof joining the doorbell's stored checkpoint and the
proof's checkpoint (from the smaller size to the larger). Checks, in this order, each
with its stable code (docs/protocol.md "Release log"):

1. `log_proof_malformed`: the bundle, the tlog-proof, the checkpoint or the note syntax;
2. `log_origin`: the checkpoint's origin is the trusted log's;
3. `log_signature`: the log's Ed25519 key signed the checkpoint (and every signature by
   a known key verifies);
4. `witness_quorum`: the valid cosignatures satisfy the tlog-policy quorum;
5. `log_inconsistent`: the checkpoint and the stored one are one append-only history
   (an equal size needs an equal root);
6. `not_logged`: the statement is included at the index under the checkpoint's root;
7. `statement_malformed`, `statement_wrong_device`, `statement_wrong_token`: the logged
   statement is this token's, for this device, and says what the token says.

The verdict names the checkpoint the doorbell must store next (the larger of the two).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import _jws
from protocol.tlog.bundle import parse_bundle
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import (
    CheckpointError,
    LogRejected,
    LogRejectionCode,
    MerkleError,
    NoteError,
    ProofFormatError,
    StatementError,
)
from protocol.tlog.merkle import leaf_hash, verify_consistency, verify_inclusion
from protocol.tlog.note import InvalidSignatureError, open_note, parse_note
from protocol.tlog.policy import WitnessPolicy, witnessed_names
from protocol.tlog.statement import (
    ReleaseStatement,
    device_tag,
    parse_statement,
    token_digest,
)


@dataclass(frozen=True)
class LogVerdict:
    """A token's statement is logged and witnessed; store `checkpoint` (and `note`)."""

    statement: ReleaseStatement
    index: int
    checkpoint: Checkpoint  # the larger of the stored and the proof's checkpoint
    proof_checkpoint: Checkpoint
    witnesses: frozenset[str]


def _reject(code: LogRejectionCode, detail: str) -> LogRejected:
    return LogRejected(code, detail)


def _expected_statement(token: bytes, tag: str, digest: str) -> ReleaseStatement:
    """The statement the service must have logged for `token`, from the token's payload
    read without judging its signatures (`verify_token` does that next)."""
    try:
        payload = json.loads(_jws.b64url_decode(json.loads(token)["payload"]))
        case, window = payload["case"], payload["window"]
        basis = payload["basis"]
        warrant = basis == "warrant"
        return ReleaseStatement(
            device_tag=tag,
            token_sha256=digest,
            basis=basis,
            window_start=window["start"],
            window_end=window["end"],
            iat=payload["iat"],
            seq=payload["seq"],
            court=case["authority"] if warrant else None,
            docket_sha256=hashlib.sha256(case["docket"].encode()).hexdigest() if warrant else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError, _jws.JwsFormatError) as exc:
        raise _reject(
            LogRejectionCode.statement_wrong_token,
            f"the token's claims cannot be read: {type(exc).__name__}",
        ) from None


def _encoded(statement: ReleaseStatement) -> bytes | None:
    try:
        return statement.encode()
    except (StatementError, TypeError, ValueError):
        return None


def verify_log_proof(
    token: bytes,
    bundle: bytes,
    *,
    policy: WitnessPolicy,
    origin: str,
    stored: Checkpoint | None,
    identity: Ed25519PublicKey,
) -> LogVerdict:
    """Check that `token` is logged for this device (enrolled with `identity`).

    `origin` is the log the doorbell trusts (its key is the policy's `log` line of that
    name); `stored` the checkpoint it last verified (None before enrolment gave one).
    Raises LogRejected with the code of the first check that fails; nothing else.
    """
    code = LogRejectionCode
    # 1: syntax.
    try:
        parsed = parse_bundle(bundle)
        proof = parsed.proof
        note = parse_note(proof.checkpoint)
        checkpoint = Checkpoint.from_text(note.text)
    except (ProofFormatError, NoteError, CheckpointError) as exc:
        raise _reject(code.log_proof_malformed, str(exc)) from None
    # 2: origin.
    log = policy.log_for(origin)
    if log is None:
        raise _reject(code.log_origin, f"the witness policy names no log {origin!r}")
    if checkpoint.origin != origin:
        raise _reject(code.log_origin, f"the checkpoint is from {checkpoint.origin[:80]!r}")
    # 3-4: the log's signature, then the witnesses' cosignatures.
    try:
        opened = open_note(note, [log.verifier, *policy.witness_verifiers])
    except InvalidSignatureError as exc:
        failed_log = (exc.name, exc.key_id) == (log.verifier.name, log.verifier.key_id)
        reason = code.log_signature if failed_log else code.witness_quorum
        raise _reject(reason, str(exc)) from None
    except NoteError as exc:
        raise _reject(code.log_signature, str(exc)) from None
    if opened.verified_by(log.verifier) is None:
        raise _reject(code.log_signature, "the log's key did not sign the checkpoint")
    witnessed = witnessed_names(policy, (v for v, _ in opened.verified))
    if not policy.satisfied(witnessed):
        names = ", ".join(sorted(witnessed)) or "none"
        raise _reject(code.witness_quorum, f"cosigned by {names}: the quorum is not met")
    # 5: consistency with the stored checkpoint.
    newest = checkpoint
    if stored is not None and stored.size > 0:
        if stored.origin != origin:
            raise _reject(code.log_inconsistent, "the stored checkpoint is from another log")
        old, new = sorted((stored, checkpoint), key=lambda c: c.size)
        c = parsed.consistency
        if (c.size1, c.size2) != (old.size, new.size):
            raise _reject(
                code.log_inconsistent,
                f"the consistency proof joins {c.size1} and {c.size2}, "
                f"not {old.size} and {new.size}",
            )
        try:
            verify_consistency(old.size, new.size, c.hashes, old.root, new.root)
        except MerkleError as exc:
            raise _reject(code.log_inconsistent, str(exc)) from None
        newest = new
    # 6: inclusion of the statement.
    entry = proof.extra
    if entry is None:
        raise _reject(code.not_logged, "the proof carries no statement")
    try:
        verify_inclusion(
            proof.index, checkpoint.size, leaf_hash(entry), proof.inclusion, checkpoint.root
        )
    except MerkleError as exc:
        raise _reject(code.not_logged, str(exc)) from None
    # 7: the statement is this token's, for this device. The honest case is one byte
    # comparison with the canonical statement the token implies; only a difference is
    # parsed, to say which rule it breaks.
    tag, digest = device_tag(identity), token_digest(token)
    expected: ReleaseStatement | None
    try:
        expected = _expected_statement(token, tag, digest)
    except LogRejected:
        expected = None  # reported below, after the statement's own checks
    if expected is not None and entry == _encoded(expected):
        return LogVerdict(expected, proof.index, newest, checkpoint, witnessed)
    try:
        statement = parse_statement(entry)
    except StatementError as exc:
        raise _reject(code.statement_malformed, str(exc)) from None
    if statement.device_tag != tag:
        raise _reject(code.statement_wrong_device, "the statement names another device")
    if statement.token_sha256 != digest:
        raise _reject(code.statement_wrong_token, "the statement names another token")
    if expected is None:
        expected = _expected_statement(token, tag, digest)  # raises statement_wrong_token
    differ = sorted(k for k, v in expected.to_json().items() if statement.to_json().get(k) != v)
    raise _reject(code.statement_wrong_token, f"the statement differs from the token in {differ}")
