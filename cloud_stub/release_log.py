"""The service's side of the release log (ADR 0014): log a token's statement, wait for
the witness quorum, and hand back the proof bundle to publish with the token.

`log_token` is idempotent (the log gives a statement it already holds its old index), so
a token whose statement has no quorum yet (`NotWitnessedYet`) simply stays `issued` and
is tried again with the other pending tokens: with two of three witnesses down releases
wait, are not lost, and go through when one returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.keys import public_key_from_hex
from protocol.tlog.statement import statement_for
from protocol.token import ReleaseClaims
from release_log.client import LogClient, LogClientError, NotWitnessedYet

__all__ = ["LogClientError", "NotWitnessedYet", "ReleaseLogPublisher"]


@dataclass
class ReleaseLogPublisher:
    client: LogClient
    wait_s: float = 10.0

    def log_token(
        self,
        token: bytes,
        claims: ReleaseClaims,
        identity_pub: str | Ed25519PublicKey,
        *,
        device_log_size: int,
    ) -> bytes:
        """The proof bundle for `token` (issued to the device enrolled with identity
        `identity_pub`, hex or key) against the checkpoint size the device reported.
        Raises NotWitnessedYet (retry later) or LogClientError."""
        identity = (
            public_key_from_hex(identity_pub) if isinstance(identity_pub, str) else identity_pub
        )
        statement = statement_for(token, claims, identity).encode()
        index = self.client.append(statement)
        bundle = self.client.proof(index, old_size=device_log_size, wait_s=self.wait_s)
        if bundle.proof.extra != statement:
            raise LogClientError(f"the log's proof for index {index} is another entry's")
        return bundle.encode()
