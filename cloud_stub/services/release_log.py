"""The service's side of the release log (ADR 0014): log a token's statement, wait for
the witness quorum, and hand back the proof bundle to publish with the token.

`log_token` is idempotent (the log gives a statement it already holds its old index), so
a token whose statement has no quorum yet (`NotWitnessedYet`) simply stays `issued` and
is tried again with the other pending tokens: with two of three witnesses down releases
wait, are not lost, and go through when one returns.

`DeploymentLog` is what `Publisher` calls before the broker: under the newest signed trust
root with a log policy it logs the token and returns the envelope to publish
(`protocol.release_envelope`), else the bare token. What enrolment writes of the log is
`cloud_stub.provision.log_enrolment`'s (docs/protocol.md section 11).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud_stub.errors import CloudError
from cloud_stub.provision.trust_roots import published_chain
from protocol import _jws
from protocol._schema import SchemaError, loads_strict
from protocol.bundle import DeploymentLayout
from protocol.errors import ProtocolError
from protocol.keys import public_key_from_hex
from protocol.release_envelope import wrap_release
from protocol.tlog.errors import TlogError
from protocol.tlog.policy import parse_policy
from protocol.tlog.statement import statement_for
from protocol.token import ReleaseClaims
from protocol.trust_root_v2 import TrustRootV2, load_any_trust_root
from release_log.client import LogClient, LogClientError, NotWitnessedYet

__all__ = ["DeploymentLog", "LogClientError", "NotWitnessedYet", "ReleaseLogPublisher",
           "claims_of"]


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


def claims_of(token: bytes) -> ReleaseClaims:
    """The claims of a token this service signed (read, not verified: they are ours).
    Raises LogClientError when the bytes are not a token."""
    try:
        raw = _jws.parse(token, max_bytes=len(token) + 1)
        return ReleaseClaims.from_payload(loads_strict(raw.payload))
    except (ProtocolError, SchemaError, ValueError) as exc:
        raise LogClientError(f"not a token of this service: {exc}") from None


class DeploymentLog:
    """The release log of a deployment, as its newest signed trust root (v2) names it.

    `with_proof` turns a token into what the service publishes on the device's `release`
    topic: the token itself when the root carries no log policy (nothing changes), else
    the envelope of `protocol.release_envelope` with the proof bundle, once the statement
    is in the log with the witness quorum (docs/protocol.md section 11). The policy's
    `log` line must give the log's URL. The checkpoint size each device last reported in
    its status (`release_log_size`) is kept here; the consistency proof starts from it
    (0 before any report). Thread-safe.
    """

    def __init__(self, layout: DeploymentLayout, *, now: Callable[[], datetime],
                 wait_s: float = 5.0) -> None:
        self._layout = layout
        self._now = now
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._publisher: tuple[str, ReleaseLogPublisher] | None = None

    def note_size(self, device_id: str, size: object) -> None:
        """Remember the size a device reported (ignored unless a non-negative int)."""
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            with self._lock:
                self._sizes[device_id] = size

    def size(self, device_id: str) -> int:
        with self._lock:
            return self._sizes.get(device_id, 0)

    def publisher(self) -> ReleaseLogPublisher | None:
        """The publisher for the newest root's log, None without a log policy. Raises
        LogClientError when the root or its policy cannot be used."""
        try:
            chain = published_chain(self._layout)
            root = load_any_trust_root(chain[-1], now=self._now()) if chain else None
        except (ProtocolError, OSError, CloudError) as exc:
            raise LogClientError(f"the newest trust root cannot be read: {exc}") from None
        if not isinstance(root, TrustRootV2) or root.log_policy is None:
            return None
        with self._lock:
            if self._publisher is not None and self._publisher[0] == root.log_policy:
                return self._publisher[1]
        try:
            policy = parse_policy(root.log_policy.encode("ascii"))
        except TlogError as exc:
            raise LogClientError(f"the trust root's log policy: {exc}") from None
        urls = [log.url for log in policy.logs if log.url]
        if len(urls) != 1:
            raise LogClientError("the trust root's log policy must give one log line a URL")
        publisher = ReleaseLogPublisher(LogClient(urls[0]), wait_s=self._wait_s)
        with self._lock:
            self._publisher = (root.log_policy, publisher)
        return publisher

    def with_proof(self, device_id: str, identity_pub: str, token: bytes) -> bytes:
        """What to publish for `token` (see the class). Raises NotWitnessedYet (the
        statement is logged, its quorum not there yet: try again later) or
        LogClientError."""
        publisher = self.publisher()
        if publisher is None:
            return token
        try:
            bundle = publisher.log_token(token, claims_of(token), identity_pub,
                                         device_log_size=self.size(device_id))
        except ProtocolError as exc:  # the device's recorded identity key is unusable
            raise LogClientError(f"no statement for device {device_id}: {exc}") from None
        return wrap_release(token, bundle)
