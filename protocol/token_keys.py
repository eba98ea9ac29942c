"""The delivered epoch keys: the `keys` claim of a release token.

The cloud seals the epoch identities to the device's transport recipient
(`seal_keys_for_device`); the device opens them with its transport identity and checks
each against the recipient it recorded for that epoch (`open_delivered_keys`). Public
through `protocol.token`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Final

import pyrage

from protocol import _schema as s
from protocol.errors import KeyFormatError, RejectionCode, TokenRejected
from protocol.token_claims import ReleaseClaims

AGE_MAGIC: Final = b"age-encryption.org/v1\n"
MAX_EPOCHS: Final = 1024
EPOCH_ID_PATTERN: Final = re.compile(r"\d{1,12}-[0-9a-f]{8}")


def decode_keys(keys: str) -> bytes:
    """The age file in a `keys` claim. Raises TokenRejected(bad_keys) when the claim is
    not standard padded base64 of an age v1 file."""
    try:
        raw = base64.b64decode(keys.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise TokenRejected(RejectionCode.bad_keys, "keys is not standard padded base64") from None
    if not raw.startswith(AGE_MAGIC):
        raise TokenRejected(RejectionCode.bad_keys, "keys does not hold an age v1 file")
    return raw


def open_delivered_keys(
    claims: ReleaseClaims,
    transport_identity: str,
    recorded_recipients: Mapping[str, str],
) -> dict[str, str]:
    """Open the `keys` claim with the device transport identity.

    Returns epoch id -> ``AGE-SECRET-KEY-1...``. Every delivered identity's public
    recipient must equal the recipient the device recorded for that epoch.
    Raises TokenRejected(bad_keys) when the claim is absent, does not decrypt or does not
    hold ``{"epochs": {...}}``; TokenRejected(keys_mismatch) for an unknown epoch or a
    wrong identity; KeyFormatError when `transport_identity` itself is not an age
    identity (a fault of the device, not of the token).
    """
    if claims.keys is None:
        raise TokenRejected(RejectionCode.bad_keys, f"a {claims.basis} token carries no keys")
    sealed = decode_keys(claims.keys)
    try:
        identity = pyrage.x25519.Identity.from_str(transport_identity.strip())
    except pyrage.IdentityError:
        raise KeyFormatError("the transport identity is not an age X25519 identity") from None
    try:
        plaintext = pyrage.decrypt(sealed, [identity])
    except pyrage.DecryptError as exc:
        raise TokenRejected(
            RejectionCode.bad_keys, f"keys could not be opened with the transport identity: {exc}"
        ) from None
    try:
        doc = s.obj(s.loads_strict(plaintext), "keys plaintext", frozenset({"epochs"}))
        epochs = doc["epochs"]
        if not isinstance(epochs, dict) or len(epochs) > MAX_EPOCHS:
            raise s.SchemaError(f"epochs must be an object of at most {MAX_EPOCHS} entries")
    except s.SchemaError as exc:
        raise TokenRejected(RejectionCode.bad_keys, str(exc)) from None
    out: dict[str, str] = {}
    for epoch, secret in epochs.items():
        if EPOCH_ID_PATTERN.fullmatch(epoch) is None:
            raise TokenRejected(
                RejectionCode.bad_keys, f"epoch id {epoch!r:.40} is not <secs>-<8 hex>"
            )
        if not isinstance(secret, str):
            raise TokenRejected(RejectionCode.bad_keys, f"epoch {epoch}: identity must be a string")
        try:
            public = str(pyrage.x25519.Identity.from_str(secret).to_public())
        except pyrage.IdentityError:
            raise TokenRejected(
                RejectionCode.bad_keys, f"epoch {epoch}: not an age X25519 identity"
            ) from None
        recorded = recorded_recipients.get(epoch)
        if recorded is None:
            raise TokenRejected(
                RejectionCode.keys_mismatch, f"epoch {epoch} was never recorded by this device"
            )
        if public != recorded:
            raise TokenRejected(
                RejectionCode.keys_mismatch,
                f"epoch {epoch}: delivered identity does not match the recorded recipient",
            )
        out[epoch] = secret
    return out


def seal_keys_for_device(epochs: Mapping[str, str], transport_recipient: str) -> str:
    """The `keys` claim: epoch identities sealed to the device's transport recipient.

    Raises KeyFormatError for a bad recipient, epoch id or identity.
    """
    if len(epochs) > MAX_EPOCHS:
        raise KeyFormatError(f"at most {MAX_EPOCHS} epochs fit in one token")
    for epoch, secret in epochs.items():
        if EPOCH_ID_PATTERN.fullmatch(epoch) is None:
            raise KeyFormatError(f"epoch id {epoch!r:.40} is not <unix seconds>-<8 hex>")
        try:
            pyrage.x25519.Identity.from_str(secret)
        except pyrage.IdentityError:
            raise KeyFormatError(f"epoch {epoch}: not an age X25519 identity") from None
    try:
        recipient = pyrage.x25519.Recipient.from_str(transport_recipient.strip())
    except pyrage.RecipientError:
        raise KeyFormatError("the transport recipient is not an age X25519 recipient") from None
    plaintext = json.dumps({"epochs": dict(epochs)}, sort_keys=True, separators=(",", ":")).encode(
        "utf-8"
    )
    try:
        sealed = pyrage.encrypt(plaintext, [recipient])
    except pyrage.EncryptError as exc:
        raise KeyFormatError(f"sealing the epoch keys failed: {exc}") from None
    return base64.b64encode(sealed).decode("ascii")
