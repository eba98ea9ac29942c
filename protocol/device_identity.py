"""The device identity certificate: the deployment's word that a device id has a given
Ed25519 identity key (the key that signs the device's evidence manifests).

A signed JSON document in the shape of the trust root, signed by a threshold of the
trust root's ``root`` role keys::

    {"signed": {"_type": "doorbell-device-identity", "device": "porch-cam",
                "identity": {"keytype": "ed25519", "public": "<hex>"},
                "issued": "<RFC 3339>"},
     "signatures": [{"keyid": "<kid>", "sig": "<hex Ed25519 over canonical_json(signed)>"}]}

An agency that holds the trust root (which it checks out of band) can thus check a
manifest's signature without asking the operator for the device's key. Pure: bytes and a
verified trust root in. Documented in docs/protocol.md ("Evidence an agency can check").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import _schema as s
from protocol.errors import DeviceCertificateError, KeyFormatError
from protocol.keys import canonical_json, key_id, public_key_from_hex, public_key_hex
from protocol.timefmt import format_time, require_aware
from protocol.trust_root import TrustRoot

CERT_TYPE: Final = "doorbell-device-identity"
MAX_CERT_BYTES: Final = 16 * 1024
MAX_SIGNATURES: Final = 64
SIGNING_ROLE: Final = "root"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A device id, its identity key and when the deployment certified it."""

    device: str
    public_key: Ed25519PublicKey
    issued: datetime

    def to_signed(self) -> dict[str, Any]:
        require_aware("issued", self.issued)
        return {
            "_type": CERT_TYPE,
            "device": self.device,
            "identity": {"keytype": "ed25519", "public": public_key_hex(self.public_key)},
            "issued": format_time(self.issued.replace(microsecond=0)),
        }


def sign_device_identity(identity: DeviceIdentity, signers: Sequence[Ed25519PrivateKey]) -> bytes:
    """The certificate (canonical JSON) signed by each of `signers` (the root role's keys).
    Raises ValueError when a signer is given twice."""
    signed = identity.to_signed()
    body = canonical_json(signed)
    signatures = []
    seen: set[str] = set()
    for signer in signers:
        kid = key_id(signer.public_key())
        if kid in seen:
            raise ValueError(f"signer {kid[:16]}... given twice")
        seen.add(kid)
        signatures.append({"keyid": kid, "sig": signer.sign(body).hex()})
    return canonical_json({"signed": signed, "signatures": signatures})


def _parse(data: bytes) -> tuple[DeviceIdentity, bytes, list[tuple[str, bytes]]]:
    if len(data) > MAX_CERT_BYTES:
        raise s.SchemaError(f"the certificate is {len(data)} bytes, the cap is {MAX_CERT_BYTES}")
    doc = s.obj(s.loads_strict(data), "certificate", frozenset({"signed", "signatures"}))
    signed = s.obj(
        doc["signed"], "signed", frozenset({"_type", "device", "identity", "issued"})
    )
    if signed["_type"] != CERT_TYPE:
        raise s.SchemaError(f"_type must be {CERT_TYPE!r}")
    key = s.obj(signed["identity"], "identity", frozenset({"keytype", "public"}))
    if key["keytype"] != "ed25519":
        raise s.SchemaError("identity.keytype must be 'ed25519'")
    try:
        public = public_key_from_hex(s.hex64(key["public"], "identity.public"))
    except KeyFormatError as exc:
        raise s.SchemaError(f"identity.public: {exc}") from None
    identity = DeviceIdentity(
        device=s.identifier(signed["device"], "device"),
        public_key=public,
        issued=s.instant(signed["issued"], "issued"),
    )
    signatures = []
    for n, item in enumerate(s.array(doc["signatures"], "signatures", max_len=MAX_SIGNATURES)):
        entry = s.obj(item, f"signatures[{n}]", frozenset({"keyid", "sig"}))
        sig = s.string(entry["sig"], f"signatures[{n}].sig", max_len=128)
        try:
            raw = bytes.fromhex(sig)
        except ValueError:
            raise s.SchemaError(f"signatures[{n}].sig must be hex") from None
        signatures.append((s.hex64(entry["keyid"], f"signatures[{n}].keyid"), raw))
    return identity, canonical_json(signed), signatures


def verify_device_identity(data: bytes, root: TrustRoot) -> DeviceIdentity:
    """The certified identity, once a threshold of `root`'s root-role keys signed it.

    Raises DeviceCertificateError naming the problem: malformed, a root-role signature
    that does not verify, or too few valid ones.
    """
    try:
        identity, body, signatures = _parse(data)
    except s.SchemaError as exc:
        raise DeviceCertificateError(f"device identity certificate malformed: {exc}") from None
    role = root.roles[SIGNING_ROLE]
    keys = root.role_keys(SIGNING_ROLE)
    valid: set[str] = set()
    for kid, sig in signatures:
        if kid not in role.keyids:
            continue
        try:
            keys[kid].verify(sig, body)
        except InvalidSignature:
            raise DeviceCertificateError(
                f"the certificate of {identity.device}: the signature by root key "
                f"{kid[:16]}... does not verify"
            ) from None
        valid.add(kid)
    if len(valid) < role.threshold:
        raise DeviceCertificateError(
            f"the certificate of {identity.device} carries {len(valid)} valid signature(s) "
            f"of the trust root's root keys, {role.threshold} required"
        )
    return identity
