"""The owner application's errors: one small hierarchy, two roots.

`HostileInput` is a payload from the broker that the protocol's parser refused (it is
reported and dropped, never stored). `OwnerError` is everything that stops a command:
the bundle, the local state, or the broker. Third-party errors (ssl, paho, OSError,
tomllib, cryptography) are translated where they are raised, and each message names
the file, the host:port or the topic concerned. Every `OwnerError` ends the command
with exit code 1; a command line the parser refuses exits 2.

Each class is also the shared class of its kind in `protocol.errors` (docs/architecture.md,
"Errors"): `HostileInput` a `HostileInputError`, `BundleError` a `ConfigError`,
`StateError` an `EnvironmentFault`, `TransportError` the shared `TransportError`.
`HostileInput` stays outside `OwnerError`: a refused payload is reported and dropped, it
does not stop a command.
"""

from __future__ import annotations

from protocol import errors as shared


class HostileInput(shared.HostileInputError):
    """A payload the protocol refused (malformed, oversized, wrong topic)."""


class OwnerError(shared.SealedDoorbellError):
    """A command cannot go on. The message is one line meant for the owner."""


class BundleError(OwnerError, shared.ConfigError):
    """The owner bundle is missing, incomplete, or holds a file that is not what it says."""


class StateError(OwnerError, shared.EnvironmentFault):
    """The local ledger cannot be read or written, or another reader holds it."""


class TransportError(OwnerError, shared.TransportError):
    """The broker could not be reached or the connection to it failed."""


class BrokerUnreachable(TransportError):
    """Nothing answered at the broker's host:port (refused, unresolvable, timed out)."""


class TlsFailure(TransportError):
    """The TLS handshake failed on our side: the broker is not the one the bundle's CA
    vouches for (wrong certificate, wrong name), or the protocols do not match."""


class CertificateRefused(TransportError):
    """The broker refused the owner's certificate (revoked, replaced, or from another CA)
    or refused the connection after the handshake."""
