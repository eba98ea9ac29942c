"""Threshold signing of release tokens with the cloud's ``release`` role keys.

Under trust root v2 (docs/adr/0013-trust-root-v2.md) the service holds the ``policy``
key only: `TokenSigner` then signs nothing by itself (`sign` refuses), and
`cloud_stub.services.signed_review` adds the policy signature to payloads the reviewers signed on
their own machines.

Under trust root v1 the root names two release keys, ``policy`` and ``review``, and a
threshold of 2. `TokenSigner` loads both, checks at start-up that they are release keys
of the deployment's trust root and together meet its threshold, and `sign` applies both
in one call when a request is approved: the policy key's signature first, then the
review key's. Both keys on one host is what trust root v2 removes (ADR 0013), so
`sign` reads the trust root in force again before it signs: once the operator signed a
v2 root, a service started under v1 signs nothing more by itself, restarted or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.errors import ConfigError, SigningError
from protocol.bundle import DeploymentLayout
from protocol.errors import KeyFormatError, TrustRootError
from protocol.keys import key_id, private_key_from_pem
from protocol.token import ReleaseClaims, add_signature, sign_token
from protocol.trust_root import BasisLimits
from protocol.trust_root_v2 import AnyTrustRoot, TrustRootV2, load_any_trust_root

POLICY_SIGNER = "policy"
REVIEW_SIGNER = "review"


def _load_key(layout: DeploymentLayout, name: str) -> Ed25519PrivateKey:
    path = layout.signer_key(name)
    try:
        return private_key_from_pem(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {name} signer key: {exc}") from exc
    except KeyFormatError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_deployment_root(layout: DeploymentLayout, now: datetime) -> AnyTrustRoot:
    """The deployment's trust root, verified. Raises `ConfigError`."""
    try:
        data = layout.trust_root.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{layout.trust_root}: cannot read the trust root: {exc}") from exc
    try:
        return load_any_trust_root(data, now=now)
    except TrustRootError as exc:
        raise ConfigError(f"{layout.trust_root}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TokenSigner:
    """The two release signers and the trust root they belong to."""

    root: AnyTrustRoot
    policy_key: Ed25519PrivateKey
    review_key: Ed25519PrivateKey | None  # v1 only
    layout: DeploymentLayout | None = field(default=None, compare=False)  # root re-read

    @classmethod
    def load(cls, layout: DeploymentLayout, now: datetime) -> TokenSigner:
        """Raises `ConfigError` when a key is unreadable or the pair cannot meet the
        trust root's release threshold."""
        root = load_deployment_root(layout, now)
        review = None if isinstance(root, TrustRootV2) else _load_key(layout, REVIEW_SIGNER)
        signer = cls(root, _load_key(layout, POLICY_SIGNER), review, layout)
        signer.check()
        return signer

    def check(self) -> None:
        if isinstance(self.root, TrustRootV2):
            if key_id(self.policy_key.public_key()) not in self.root.policy_keyids:
                raise ConfigError("the policy key is not the policy key of the trust root")
            return
        if self.review_key is None:
            raise ConfigError("trust root v1 needs the review signer key")
        release = self.root.roles["release"]
        kids = {key_id(self.policy_key.public_key()), key_id(self.review_key.public_key())}
        if len(kids) != 2:
            raise ConfigError("the policy and review signers are the same key")
        unknown = kids - release.keyids
        if unknown:
            raise ConfigError("a signer key is not a release key of the trust root")
        if len(kids) < release.threshold:
            raise ConfigError(
                f"the trust root needs {release.threshold} release signatures; this"
                f" service holds {len(kids)} release keys"
            )

    @property
    def issuer(self) -> str:
        return self.root.issuer

    def limits(self, basis: str) -> BasisLimits:
        return self.root.limits[basis]

    def sign(self, claims: ReleaseClaims) -> bytes:
        """The token with both signatures. Raises `SigningError` for claims that a device
        would refuse as malformed."""
        if self.review_key is None or self._v2_in_force(claims.iat):
            raise SigningError("under trust root v2 reviewers sign on their own machines: "
                               "use GET /v1/requests/{id}/signing-payload and "
                               "POST /v1/requests/{id}/signatures",
                               code="reviewer_signature_required")
        try:
            token = sign_token(claims, [self.policy_key])
            return add_signature(token, self.review_key)
        except ValueError as exc:
            raise SigningError(f"cannot sign token {claims.jti}: {exc}") from exc

    def reviewers_sign(self, now: datetime) -> bool:
        """True when approvals must be signed by the reviewers on their own machines at
        `now`: this service holds no review key, or the trust root in force is v2 (the
        operator may have rotated it while the service ran). A root that cannot be read
        counts as True: `sign` would refuse anyway, and nothing offers to sign."""
        if self.review_key is None:
            return True
        try:
            return self._v2_in_force(int(now.timestamp()))
        except SigningError:
            return True

    def _v2_in_force(self, iat: int) -> bool:
        """True when the deployment's trust root in force at `iat` is v2 (the operator
        rotated it while this service ran). Raises `SigningError` when it cannot be read:
        nothing is signed against a root that cannot be checked."""
        if self.layout is None:
            return False
        try:
            current = load_deployment_root(self.layout, datetime.fromtimestamp(iat, UTC))
        except ConfigError as exc:
            raise SigningError(f"cannot check the trust root in force: {exc.message}") from exc
        return isinstance(current, TrustRootV2)

