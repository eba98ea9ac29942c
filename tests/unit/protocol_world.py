"""An in-memory cloud for protocol tests: deterministic keys, a trust root, tokens.

Keys derive from fixed seeds so that failures are reproducible; nothing here is used
outside tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.keys import key_id
from protocol.token import CaseRef, ReleaseClaims, Window, seal_keys_for_device, sign_token
from protocol.trust_root import DEFAULT_LIMITS, Role, TrustRoot, sign_trust_root

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
DEVICE = "porch-1"
ISSUER = "cloud-stub"


def seeded_key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


@dataclass
class Replay:
    """The device's replay state, in memory."""

    jtis: set[str] = field(default_factory=set)
    seq: int = 0

    def seen(self, jti: str) -> bool:
        return jti in self.jtis

    def last_seq(self) -> int:
        return self.seq


@dataclass
class World:
    root_keys: list[Ed25519PrivateKey]
    release_keys: list[Ed25519PrivateKey]
    root: TrustRoot
    root_bytes: bytes
    transport: pyrage.x25519.Identity
    epoch_identity: pyrage.x25519.Identity
    epoch_id: str = "1780315200-0a1b2c3d"

    @property
    def recorded(self) -> dict[str, str]:
        return {self.epoch_id: str(self.epoch_identity.to_public())}

    def claims(self, **changes: object) -> ReleaseClaims:
        iat = int(NOW.timestamp()) - 10
        base = ReleaseClaims(
            v=1,
            iss=ISSUER,
            aud=DEVICE,
            jti="tok-1",
            seq=1,
            iat=iat,
            nbf=iat,
            exp=iat + 3600,
            basis="warrant",
            case=CaseRef(
                request_id="req-1",
                docket="2026-MJ-0042",
                authority="demo-district-court",
                document_sha256="ab" * 32,
            ),
            window=Window(start=NOW - timedelta(hours=3), end=NOW - timedelta(hours=1)),
            recipient=str(pyrage.x25519.Identity.from_str(AGENCY_IDENTITY).to_public()),
            keys=seal_keys_for_device(
                {self.epoch_id: str(self.epoch_identity)}, str(self.transport.to_public())
            ),
            upload="http://127.0.0.1:8080/v1/evidence/tok-1",
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def preservation_claims(self, **changes: object) -> ReleaseClaims:
        base = replace(
            self.claims(),
            basis="preservation",
            recipient=None,
            keys=None,
            upload=None,
            hold_until=NOW + timedelta(days=30),
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def token(self, claims: ReleaseClaims | None = None) -> bytes:
        return sign_token(claims or self.claims(), self.release_keys)


AGENCY_IDENTITY = str(pyrage.x25519.Identity.generate())


def make_world(*, release_threshold: int = 2, expires: datetime | None = None) -> World:
    root_keys = [seeded_key("root-1"), seeded_key("root-2")]
    release_keys = [seeded_key("policy"), seeded_key("review")]
    every = root_keys + release_keys
    root = TrustRoot(
        version=1,
        expires=expires or NOW + timedelta(days=365),
        issuer=ISSUER,
        keys=MappingProxyType({key_id(k.public_key()): k.public_key() for k in every}),
        roles=MappingProxyType(
            {
                "root": Role(frozenset(key_id(k.public_key()) for k in root_keys), 2),
                "release": Role(
                    frozenset(key_id(k.public_key()) for k in release_keys), release_threshold
                ),
            }
        ),
        limits=DEFAULT_LIMITS,
    )
    return World(
        root_keys=root_keys,
        release_keys=release_keys,
        root=root,
        root_bytes=sign_trust_root(root, root_keys),
        transport=pyrage.x25519.Identity.generate(),
        epoch_identity=pyrage.x25519.Identity.generate(),
    )
