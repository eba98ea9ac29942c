"""The deployment's signers and the trust root they define (docs/protocol.md).

Four Ed25519 signers: ``root-1`` and ``root-2`` form the `root` role (threshold 2), and
``policy`` and ``review`` the `release` role (threshold 2: the policy engine signs once
the automated legal check passes, the review key once the approvals are in). The first
trust root is signed by both root keys and checked with `load_trust_root` before it is
written, so a deployment never ships a root the device would refuse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.provision.errors import DeploymentError
from protocol.errors import TrustRootError
from protocol.keys import key_id
from protocol.trust_root import DEFAULT_LIMITS, Role, TrustRoot, load_trust_root, sign_trust_root

ROOT_SIGNERS = ("root-1", "root-2")
RELEASE_SIGNERS = ("policy", "review")
SIGNERS = ROOT_SIGNERS + RELEASE_SIGNERS
ROOT_THRESHOLD = 2
RELEASE_THRESHOLD = 2
DEFAULT_ROOT_LIFETIME = dt.timedelta(days=365)  # rotate yearly with `update_trust_root`


def first_trust_root(
    signers: Mapping[str, Ed25519PrivateKey],
    *,
    issuer: str,
    now: dt.datetime,
    lifetime: dt.timedelta = DEFAULT_ROOT_LIFETIME,
) -> bytes:
    """Version 1 of the trust root, signed by the root role, as canonical JSON bytes.

    Raises DeploymentError when a signer is missing or the signed document does not load.
    """
    missing = [name for name in SIGNERS if name not in signers]
    if missing:
        raise DeploymentError(f"signer keys missing for the trust root: {', '.join(missing)}")
    kids = {name: key_id(signers[name].public_key()) for name in SIGNERS}
    root = TrustRoot(
        version=1,
        expires=(now + lifetime).replace(microsecond=0),
        issuer=issuer,
        keys=MappingProxyType({kids[name]: signers[name].public_key() for name in SIGNERS}),
        roles=MappingProxyType(
            {
                "root": Role(
                    keyids=frozenset(kids[n] for n in ROOT_SIGNERS), threshold=ROOT_THRESHOLD
                ),
                "release": Role(
                    keyids=frozenset(kids[n] for n in RELEASE_SIGNERS),
                    threshold=RELEASE_THRESHOLD,
                ),
            }
        ),
        limits=DEFAULT_LIMITS,
    )
    data = sign_trust_root(root, [signers[name] for name in ROOT_SIGNERS])
    try:
        load_trust_root(data, now=now)
    except TrustRootError as exc:
        raise DeploymentError(f"the new trust root does not verify: {exc}") from exc
    return data
