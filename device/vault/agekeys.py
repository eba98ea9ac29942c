"""age X25519 key strings: bech32 decoding and the X25519 stanza's wrap and unwrap.

pyrage's `x25519.Recipient` / `Identity` expose no raw key bytes (only `str()`), so the
bech32 strings are decoded here (BIP 173 bech32, without its 90-character limit, as age
specifies). The stanza follows https://age-encryption.org/v1 section "X25519 recipient
type": an ephemeral X25519 share, HKDF-SHA256 over the shared secret salted with
``share || recipient`` and info ``age-encryption.org/v1/X25519``, and ChaCha20-Poly1305
with a zero nonce over the 16-byte file key.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from device.vault.errors import AgeFormatError, InvalidAgeKey

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_MAP = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BECH32_CONST = 1  # bech32 (not bech32m)
MAX_KEY_STRING = 200  # an X25519 key string is 62 (recipient) or 74 (identity) characters

RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
X25519_LABEL = b"age-encryption.org/v1/X25519"
_ZERO_NONCE = bytes(12)
FILE_KEY_SIZE = 16
X25519_SHARE_SIZE = 32
X25519_BODY_SIZE = FILE_KEY_SIZE + 16  # the sealed file key and its Poly1305 tag


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            if (top >> i) & 1:
                check ^= _GENERATOR[i]
    return check


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_5_to_8(data: list[int]) -> bytes:
    acc = 0
    bits = 0
    out = bytearray()
    for value in data:
        acc = (acc << 5) | value
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        raise InvalidAgeKey("bech32 data has non-zero or excess padding bits")
    return bytes(out)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32 string into (lowercase hrp, payload bytes).

    Raises InvalidAgeKey for mixed case, a bad character, a bad checksum or bad padding.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_KEY_STRING:
        raise InvalidAgeKey("an age key must be a bech32 string of at most 200 characters")
    if text.lower() != text and text.upper() != text:
        raise InvalidAgeKey("an age key string must not mix upper and lower case")
    lowered = text.lower()
    sep = lowered.rfind("1")
    if sep < 1 or sep + 7 > len(lowered):
        raise InvalidAgeKey("not a bech32 string (no human-readable part or checksum)")
    hrp, rest = lowered[:sep], lowered[sep + 1 :]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise InvalidAgeKey("bech32 human-readable part has invalid characters")
    try:
        data = [_CHARSET_MAP[c] for c in rest]
    except KeyError as exc:
        raise InvalidAgeKey(f"bech32 data has an invalid character {exc.args[0]!r}") from None
    if _polymod(_hrp_expand(hrp) + data) != _BECH32_CONST:
        raise InvalidAgeKey("bech32 checksum does not match (a typo in the key?)")
    return hrp, _convert_5_to_8(data[:-6])


@dataclass(frozen=True, slots=True)
class X25519Recipient:
    """A parsed ``age1...`` recipient: the raw 32-byte X25519 public key."""

    public: bytes

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        """Raises InvalidAgeKey unless `text` is an ``age1...`` X25519 recipient."""
        hrp, data = bech32_decode(text.strip())
        if hrp != RECIPIENT_HRP or len(data) != 32:
            raise InvalidAgeKey("not an age X25519 recipient (expected age1... of 32 bytes)")
        return cls(data)

    def wrap(self, file_key: bytes) -> tuple[list[str], bytes]:
        """Seal `file_key` to this recipient: (stanza arguments, stanza body)."""
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        try:
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public))
        except ValueError as exc:  # a low-order point yields the all-zero secret
            raise InvalidAgeKey("the age recipient is a low-order X25519 point") from exc
        wrap_key = _hkdf(shared, share + self.public, X25519_LABEL)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return ["X25519", _b64(share)], body


class X25519Identity:
    """A parsed ``AGE-SECRET-KEY-1...`` identity. Holds the secret only in memory."""

    __slots__ = ("_private", "public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        """Raises InvalidAgeKey unless `text` is an ``AGE-SECRET-KEY-1...`` identity."""
        stripped = text.strip()
        if stripped != stripped.upper():
            raise InvalidAgeKey("an age identity must be written in upper case")
        hrp, data = bech32_decode(stripped)
        if hrp != IDENTITY_HRP or len(data) != 32:
            raise InvalidAgeKey("not an age X25519 identity (expected AGE-SECRET-KEY-1...)")
        return cls(X25519PrivateKey.from_private_bytes(data))

    def unwrap(self, stanza: X25519Stanza) -> bytes | None:
        """The file key if this X25519 stanza opens with this identity, else None.

        None means only "addressed to someone else" (the body does not authenticate).
        Raises AgeFormatError when the share is a low-order point (including the
        identity point), for which X25519 gives the all-zero secret: age refuses the
        header then, and so does this reader (tests/vectors/age/README.md).
        """
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(stanza.share))
        except ValueError:
            raise AgeFormatError(
                "age X25519 stanza's share is a low-order point (all-zero shared secret)"
            ) from None
        wrap_key = _hkdf(shared, stanza.share + self.public, X25519_LABEL)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None


@dataclass(frozen=True, slots=True)
class X25519Stanza:
    """A well-formed X25519 recipient stanza: a 32-byte share and a 32-byte body."""

    share: bytes
    body: bytes

    @classmethod
    def parse(cls, args: list[str], body: bytes) -> X25519Stanza:
        """Check the stanza's shape (the arguments after the type, and the body).

        Raises AgeFormatError naming the fault: a stanza of a type the reader knows that
        is malformed fails the whole header, as in age; it is never skipped.
        """
        if len(args) != 1:
            raise AgeFormatError(
                f"age X25519 stanza has {len(args)} arguments after its type, expected 1"
            )
        share = _b64decode_strict(args[0])
        if share is None:
            raise AgeFormatError("age X25519 stanza's share is not canonical unpadded base64")
        if len(share) != X25519_SHARE_SIZE:
            raise AgeFormatError(
                f"age X25519 stanza's share is {len(share)} bytes, expected {X25519_SHARE_SIZE}"
            )
        if len(body) != X25519_BODY_SIZE:
            raise AgeFormatError(
                f"age X25519 stanza's body is {len(body)} bytes, expected {X25519_BODY_SIZE}"
            )
        return cls(share, body)


def parse_recipients(recipients: list[str] | tuple[str, ...]) -> list[X25519Recipient]:
    """Parse ``age1...`` strings. Raises InvalidAgeKey (also for an empty list)."""
    if not recipients:
        raise InvalidAgeKey("at least one age recipient is required")
    return [X25519Recipient.parse(r) for r in recipients]


def parse_identities(identities: list[str] | tuple[str, ...]) -> list[X25519Identity]:
    """Parse identity strings; lines starting with '#' and blank lines are skipped.

    Each string may be a whole identity file. Raises InvalidAgeKey (also when none).
    """
    parsed: list[X25519Identity] = []
    for item in identities:
        for line in item.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                parsed.append(X25519Identity.parse(line))
    if not parsed:
        raise InvalidAgeKey("at least one age identity is required")
    return parsed


def new_file_key() -> bytes:
    return os.urandom(FILE_KEY_SIZE)


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with a 32-byte output, as age uses it everywhere."""
    return _hkdf(ikm, salt, info)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64encode_nopad(data: bytes) -> str:
    """Standard base64 without padding (age's encoding)."""
    return _b64(data)


def _b64decode_strict(text: str) -> bytes | None:
    if "=" in text or len(text) % 4 == 1:
        return None
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if _b64(data) != text:  # non-canonical encodings are refused, as age does
        return None
    return data


def b64decode_nopad(text: str) -> bytes | None:
    """Strict canonical unpadded base64, or None."""
    return _b64decode_strict(text)
