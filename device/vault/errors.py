"""Errors of the sealed store, under the agent's two roots (`device.errors`).

A sealed file, a key string or a clip id that came from outside is `HostileInputError`;
the disk or the index failing under us is `EnvironmentFault` (and `StorageFull`, from the
root module, when no space can be freed). Third-party errors (cryptography, pyrage,
sqlite3, OSError) are translated into these where the library is called.
"""

from __future__ import annotations

from device.errors import EnvironmentFault, HostileInputError, StorageFull


class InvalidAgeKey(HostileInputError):
    """A string is not a well-formed age X25519 recipient (age1...) or identity."""


class AgeFormatError(HostileInputError):
    """The bytes are not an age v1 file this reader can open (header or payload)."""


class ArmoredAgeFile(AgeFormatError):
    """The file is ASCII-armored age; this reader reads only the binary form."""


class NoMatchingIdentity(AgeFormatError):
    """None of the given identities unwraps the file key of this age file."""


class TamperedStream(AgeFormatError):
    """The header MAC or a payload chunk failed authentication: the file was altered."""

    def __init__(self, message: str, verified_bytes: int) -> None:
        super().__init__(message)
        self.verified_bytes = verified_bytes


class TruncatedStream(AgeFormatError):
    """The final chunk is missing: only `verified_bytes` of plaintext were authenticated.

    Those bytes were already yielded by the reader; nothing after them is trusted.
    """

    def __init__(self, message: str, verified_bytes: int) -> None:
        super().__init__(message)
        self.verified_bytes = verified_bytes


class UnknownClip(HostileInputError):
    """A clip id names no clip in the index."""


class ClipStateError(HostileInputError):
    """An operation does not fit the clip's state (for example exporting a recording clip)."""


class VaultIndexError(EnvironmentFault):
    """The SQLite index could not be opened, migrated, read or written."""


class IndexFull(VaultIndexError, StorageFull):
    """The index could not be written because the disk is full (SQLITE_FULL)."""


class ClipWriteFailed(EnvironmentFault):
    """Writing a clip failed for a reason other than a full disk; the clip is truncated."""


class OutboxError(EnvironmentFault):
    """The escrow outbox directory could not be written."""


class EscrowError(EnvironmentFault):
    """A new epoch key could not be generated or sealed to the escrow recipient."""


__all__ = [
    "AgeFormatError",
    "ArmoredAgeFile",
    "ClipStateError",
    "ClipWriteFailed",
    "EscrowError",
    "IndexFull",
    "InvalidAgeKey",
    "NoMatchingIdentity",
    "OutboxError",
    "TamperedStream",
    "TruncatedStream",
    "UnknownClip",
    "VaultIndexError",
]
