"""Errors of the transparency-log formats, and the stable log rejection codes.

Every parser and verifier in `protocol.tlog` raises a subclass of `TlogError` naming
the problem; nothing from `cryptography`, `base64` or `json` escapes. The device-side
check (`protocol.tlog.verify`) raises `LogRejected` carrying a `LogRejectionCode`.

`LogRejectionCode` values are part of the wire contract (the `reason` a doorbell reports
for a token it refused because of the release log, docs/protocol.md "Release log",
tests/vectors/tlog/device.json): never rename one, only add. They are listed here in the
order in which the doorbell checks them.
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import ProtocolError


class LogRejectionCode(StrEnum):
    """Why a token was refused by the release-log check, in check order."""

    log_proof_malformed = "log_proof_malformed"  # bundle, tlog-proof or checkpoint unreadable
    log_origin = "log_origin"  # the checkpoint's origin is not the trusted log's
    log_signature = "log_signature"  # no valid signature by the log key on the checkpoint
    witness_quorum = "witness_quorum"  # cosignatures do not satisfy the witness policy
    log_inconsistent = "log_inconsistent"  # not an append-only extension of the stored one
    not_logged = "not_logged"  # the statement is not included in the checkpointed tree
    statement_malformed = "statement_malformed"  # the logged entry is not a release statement
    statement_wrong_device = "statement_wrong_device"  # device_tag is another device's
    statement_wrong_token = "statement_wrong_token"  # noqa: S105  # not this token's statement


class TlogError(ProtocolError):
    """Base of every error raised on purpose by `protocol.tlog`."""


class MerkleError(TlogError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


class NoteError(TlogError):
    """A signed note, key, or signature line is malformed or fails verification."""


class CheckpointError(TlogError):
    """A checkpoint body is not a c2sp.org/tlog-checkpoint."""


class ProofFormatError(TlogError):
    """A c2sp.org/tlog-proof or a proof bundle is malformed."""


class PolicyError(TlogError):
    """A c2sp.org/tlog-policy file is malformed or a checkpoint fails its quorum."""


class StatementError(TlogError):
    """A release statement is malformed, oversized or not canonical."""


class TileError(TlogError):
    """A tile path or tile content is malformed."""


class LogRejected(TlogError):
    """A token failed the release-log check (`code` says which rule)."""

    def __init__(self, code: LogRejectionCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[LogRejected], tuple[LogRejectionCode, str]]:
        return (type(self), (self.code, self.detail))
