"""Device identity certificates for the agency's evidence download.

The deployment certifies a device's enrolled identity key (``devices/<id>/identity.pub``)
with its trust root's root-role keys (`protocol.device_identity`), once, into
``devices/<id>/identity-cert.json``; the evidence listing carries it, so that an agency
checks a manifest's signature against the deployment's trust root alone
(docs/protocol.md, "Evidence an agency can check").

The root keys are meant to be offline (ADR 0013), so the certificate is made where they
are: at enrolment, while `offline-root/` is still beside the deployment (or, for a
deployment made before ADR 0013, from `cloud/signers/`), and for devices enrolled after
they went offline by `cloud-stub root certify --keys DIR` where they are
(`certify_enrolled`). A service that cannot read them serves the certificate it kept, or
none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_stub.errors import ConfigError
from cloud_stub.provision.trust import ROOT_SIGNERS
from protocol.bundle import DeploymentLayout
from protocol.device_identity import DeviceIdentity, sign_device_identity
from protocol.errors import KeyFormatError
from protocol.keys import private_key_from_pem, public_key_from_hex

CERT_FILE = "identity-cert.json"


def certificate_path(layout: DeploymentLayout, device_id: str) -> Path:
    return layout.device_record(device_id) / CERT_FILE


def device_certificate(
    layout: DeploymentLayout, device_id: str, identity_pub: str, now: datetime
) -> bytes | None:
    """The certificate of `device_id`'s identity key `identity_pub` (hex), made and kept
    on first use; None when none is kept and the root keys are not on this host. A kept
    certificate for another key (a re-enrolled id) is replaced. Raises ConfigError when
    a root key is present but cannot be read."""
    kept = kept_certificate(layout, device_id, identity_pub)
    if kept is not None:
        return kept
    _identity_key(device_id, identity_pub)  # a bad record is named even with no root keys
    paths = _root_key_paths(layout)
    if paths is None:
        return None
    signers = []
    for name, key_path in zip(ROOT_SIGNERS, paths, strict=True):
        try:
            signers.append(private_key_from_pem(key_path.read_bytes()))
        except (OSError, KeyFormatError) as exc:
            raise ConfigError(f"{key_path}: cannot read the {name} key: {exc}") from exc
    return _certify(layout, device_id, identity_pub, signers, now)


def kept_certificate(layout: DeploymentLayout, device_id: str,
                     identity_pub: str) -> bytes | None:
    """The certificate kept for `device_id` when it certifies `identity_pub` (hex)."""
    try:
        kept = certificate_path(layout, device_id).read_bytes()
    except FileNotFoundError:
        return None
    return kept if f'"public":"{identity_pub}"'.encode() in kept else None


def certify_enrolled(layout: DeploymentLayout, identities: Mapping[str, str],
                     signers: Sequence[Ed25519PrivateKey], now: datetime) -> list[str]:
    """Certify, with the root keys `signers`, each device of `identities` (device id ->
    its enrolled identity key, hex) whose kept certificate is missing or certifies another
    key; the ids certified, sorted. Raises ConfigError for a key that does not parse."""
    done = []
    for device_id, identity_pub in sorted(identities.items()):
        if kept_certificate(layout, device_id, identity_pub) is None:
            _certify(layout, device_id, identity_pub, signers, now)
            done.append(device_id)
    return done


def _certify(layout: DeploymentLayout, device_id: str, identity_pub: str,
             signers: Sequence[Ed25519PrivateKey], now: datetime) -> bytes:
    public = _identity_key(device_id, identity_pub)
    data = sign_device_identity(
        DeviceIdentity(device=device_id, public_key=public, issued=now), list(signers)
    )
    path = certificate_path(layout, device_id)
    tmp = path.with_name(f".{CERT_FILE}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return data


def _identity_key(device_id: str, identity_pub: str) -> Ed25519PublicKey:
    try:
        return public_key_from_hex(identity_pub)
    except KeyFormatError as exc:
        raise ConfigError(f"device {device_id}: enrolled identity key: {exc}") from exc


def _root_key_paths(layout: DeploymentLayout) -> list[Path] | None:
    """The root key files where they are all present: `offline-root/` (ADR 0013), or
    `cloud/signers/` of a deployment made before it; None when neither holds them."""
    for paths in ([layout.root_key(n) for n in ROOT_SIGNERS],
                  [layout.signer_key(n) for n in ROOT_SIGNERS]):
        if all(p.exists() for p in paths):
            return paths
    return None
