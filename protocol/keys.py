"""Ed25519 key encodings and canonical JSON (docs/architecture.md, "Keys and their files").

A key id (`kid`) is the lowercase hex SHA-256 of the raw 32-byte public key. Public keys
travel as 64 lowercase hex characters inside JSON; private keys are PKCS#8 PEM files.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import KeyFormatError

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_PEM_BYTES = 4096


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The key id: lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()


def public_key_hex(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The raw public key as 64 lowercase hex characters (of the public half, if private)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    return raw_public_bytes(key).hex()


def is_hex64(value: object) -> bool:
    """True for a string of exactly 64 lowercase hex characters (a kid, a sha256)."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def public_key_from_hex(value: str) -> Ed25519PublicKey:
    """Read a raw public key written as 64 lowercase hex characters.

    Raises KeyFormatError for anything else (wrong length, case, characters or type).
    """
    if not is_hex64(value):
        raise KeyFormatError("an Ed25519 public key must be 64 lowercase hex characters")
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file itself is written 0600 by its owner)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes) -> Ed25519PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key.

    Raises KeyFormatError when the bytes are not PEM, are encrypted, are too large, or
    hold another kind of key.
    """
    if not isinstance(data, bytes) or len(data) > MAX_PEM_BYTES:
        raise KeyFormatError(f"a private key file must be PEM bytes of at most {MAX_PEM_BYTES}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not an unencrypted PEM private key: {exc}") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and backend errors
        raise KeyFormatError(f"private key could not be read: {type(exc).__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"expected an Ed25519 private key, found {type(key).__name__}")
    return key


def canonical_json(obj: Any) -> bytes:
    """Canonical bytes to sign: sorted keys, compact separators, UTF-8, no NaN/Infinity.

    Raises ValueError for NaN or infinities and TypeError for values JSON cannot hold.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


SESSION_ID_CONTEXT = b"sealed-doorbell/mqtt-session-id/v1\n"


def private_session_id(name: str, secret_key_file: bytes) -> str:
    """The MQTT client id under which `name` (a device id, the cloud id) keeps its
    persistent session: ``<name>.<32 hex>``, the hex derived from the bytes of the
    client's own private key file.

    Any holder of a certificate from the deployment's CA may connect with any client id,
    and the broker hands an existing session to the newest connection with that id: a
    guessable id would let another device or an owner knock this client off and drop the
    QoS 1 messages queued for it. This id can only be computed with the key, stays the
    same across restarts (so the session survives them), and the '.' keeps it apart from
    every device id.
    """
    tag = hashlib.sha256(SESSION_ID_CONTEXT + secret_key_file).hexdigest()[:32]
    return f"{name}.{tag}"
