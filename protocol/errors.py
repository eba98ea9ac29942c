"""The error hierarchy shared by every program, the protocol's own errors, and the
stable rejection codes.

The shared floor, in the manner of sigstore-python's `errors.py` and python-tuf's two
roots (docs/architecture.md, "Errors")::

    SealedDoorbellError
    ├── ConfigError          a configuration or deployment file is missing or ill-formed
    ├── HostileInputError    bytes from outside were refused; never retried as is
    │   └── ProtocolError    everything `protocol` raises on purpose
    └── EnvironmentFault     the world failed under us (disk, database, camera); may be retried
        └── TransportError   the broker, the cloud or the network could not be reached

Each program keeps its own root (`DoorbellError`, `CloudError`, `OwnerError`) and its
classes of these names subclass both that root and the shared class, so an ``except``
of the program's root keeps its meaning and an ``except`` of a shared class here
catches the same kind of failure from any program. These classes carry no state of
their own: a program's root adds what it needs (the cloud stub's ``code``).

Everything raised on purpose by `protocol` is a `ProtocolError`. Hostile input (a token,
a trust root, a manifest, a signed request, an MQTT payload) is rejected with a subclass
that names the problem; third-party errors (joserfc, cryptography, pyrage, json) are
translated at the call that can raise them and never escape.

`RejectionCode` values are part of the wire contract (the `reason` of a `result`
message, the `code` printed by `doorbell-agent token verify`, the test vectors): never
rename one, only add.
"""

from __future__ import annotations

from enum import StrEnum


class RejectionCode(StrEnum):
    """Why a token (or a trust root) was refused. Stable, machine-readable."""

    oversized = "oversized"  # larger than the size cap; nothing was parsed
    malformed = "malformed"  # not the JWS JSON structure, or claims outside the schema
    bad_header = "bad_header"  # protected header not exactly {alg: Ed25519, kid, typ}
    bad_signature = "bad_signature"  # a signature under a trusted kid does not verify
    below_threshold = "below_threshold"  # fewer valid signatures from distinct kids than needed
    wrong_device = "wrong_device"  # aud is not this device
    wrong_issuer = "wrong_issuer"  # iss is not the trust root's issuer
    not_yet_valid = "not_yet_valid"  # now < nbf - skew, or iat in the future
    expired = "expired"  # now >= exp
    clock_unsynchronized = "clock_unsynchronized"  # the time rules cannot be judged yet: defer
    token_life_too_long = "token_life_too_long"  # noqa: S105  # exp - iat above the limit
    replayed = "replayed"  # jti already seen
    stale_seq = "stale_seq"  # seq not above the last accepted
    basis_not_allowed = "basis_not_allowed"  # basis refused by the owner's settings
    window_too_long = "window_too_long"  # window longer than the basis limit
    window_in_future = "window_in_future"  # window end after iat
    hold_too_long = "hold_too_long"  # preservation hold_until more than 90 days after iat
    bad_recipient = "bad_recipient"  # recipient is not an age X25519 recipient
    bad_keys = "bad_keys"  # keys is not base64 of an age file for this device's transport key
    keys_mismatch = "keys_mismatch"  # a delivered identity is not the recorded epoch recipient's
    root_expired = "root_expired"  # the trust root's expires has passed
    bad_version = "bad_version"  # a new trust root's version is not exactly current + 1
    # trust root v2 (docs/adr/0013-trust-root-v2.md), in check order
    policy_signature_missing = "policy_signature_missing"  # too few valid policy signatures
    review_signature_missing = "review_signature_missing"  # too few distinct reviewer signatures
    review_orgs_too_few = "review_orgs_too_few"  # reviewers from too few organisations
    warrant_missing = "warrant_missing"  # the basis needs a court-signed warrant statement
    court_unknown = "court_unknown"  # the statement's court is not a court of the trust root
    court_signature_invalid = "court_signature_invalid"  # the court's signature does not verify
    warrant_order_type = "warrant_order_type"  # the order is not a search warrant
    warrant_wrong_device = "warrant_wrong_device"  # the warrant does not name this device
    warrant_window_exceeded = "warrant_window_exceeded"  # token window outside the warrant's
    warrant_not_in_force = "warrant_not_in_force"  # iat outside the warrant, or exp after it
    warrant_case_mismatch = "warrant_case_mismatch"  # case differs from the signed statement


class SealedDoorbellError(Exception):
    """Base of every error `protocol`, the device, the cloud stub and the owner's
    application raise on purpose."""


class ConfigError(SealedDoorbellError):
    """A configuration or deployment file is missing, unreadable or ill-formed."""


class HostileInputError(SealedDoorbellError):
    """Input from outside was refused (a token, a payload, a file, a signature).

    Never retried as is."""


class EnvironmentFault(SealedDoorbellError):
    """The world failed under us (disk, database, broker, camera, network). May be retried."""


class TransportError(EnvironmentFault):
    """The broker, the cloud or the network could not be reached, or dropped the exchange."""


class ProtocolError(HostileInputError):
    """Base of every error `protocol` raises on purpose: hostile bytes refused."""


class CodedError(ProtocolError):
    """A rejection carrying a stable `code` and a human `detail`."""

    def __init__(self, code: RejectionCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[CodedError], tuple[RejectionCode, str]]:
        return (type(self), (self.code, self.detail))


class TokenRejected(CodedError):
    """A release or preservation token failed one acceptance rule (`code` says which)."""


class TrustRootError(CodedError):
    """A trust root document is not acceptable (initial load or rotation)."""


class KeyFormatError(ProtocolError):
    """A key file or a hex public key could not be read as an Ed25519 key."""


class ManifestError(ProtocolError):
    """An evidence manifest is malformed, wrongly signed, or outside the token's window."""


class RequestSignatureError(ProtocolError):
    """A signed device request is malformed, too old or too new, or wrongly signed."""


class MessageError(ProtocolError):
    """An MQTT payload (escrow, escrow-ack, result, status, notice) is not acceptable."""


class DeviceCertificateError(ProtocolError):
    """A device identity certificate is malformed or not signed by the deployment's root."""
