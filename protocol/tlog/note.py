"""c2sp.org/signed-note: text signed by one or more keys, as Go's `sumdb/note` reads it.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
`— <name> base64(key id || signature)`. Keys are identified by (name, key id); the key
id is `SHA-256(name || 0x0A || type || public key)[:4]`. Two signature types are
supported, the only two this project uses:

- `0x01` Ed25519 over the note text (the log's checkpoint signature);
- `0x04` c2sp.org/tlog-cosignature `cosignature/v1`: a big-endian u64 timestamp and an
  Ed25519 signature over `cosignature/v1\\ntime <t>\\n` followed by the note text (a
  witness's cosignature).

Opening a note follows `note.Open`: signatures from unknown keys are kept aside and
ignored, a known key whose signature fails rejects the whole note, and a note with no
verified signature is refused. Verifier keys ("vkeys") are `name+hex(id)+base64(type ||
key)`; signer keys use Go's `PRIVATE+KEY+name+hex(id)+base64(type || seed)`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.tlog.errors import NoteError

SIG_PREFIX = "— "
MAX_SIGNATURES = 100  # note.Open's limit; the spec asks for at least 16
MAX_TIMESTAMP = 2**63 - 1
COSIGNATURE_HEADER = b"cosignature/v1\n"


class SignatureType(IntEnum):
    """Signature type identifier bytes of c2sp.org/signed-note used here."""

    ed25519 = 0x01
    cosignature_v1 = 0x04


class InvalidSignatureError(NoteError):
    """A signature by a known key (name and id) does not verify: the note is refused."""

    def __init__(self, name: str, key_id: int) -> None:
        super().__init__(f"invalid signature for key {name}+{key_id:08x}")
        self.name = name
        self.key_id = key_id

    def __reduce__(self) -> tuple[type[InvalidSignatureError], tuple[str, int]]:
        return (type(self), (self.name, self.key_id))


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError("not standard base64") from None


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_SPACE_OR_PLUS = re.compile(r"[\s+]")


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no plus sign (signed-note "Format")."""
    return bool(name) and _SPACE_OR_PLUS.search(name) is None


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def compute_key_id(name: str, sig_type: SignatureType, public_key: bytes) -> int:
    """`SHA-256(name || 0x0A || type || public key)[:4]` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """The message a `cosignature/v1` signs for a checkpoint note text."""
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


@dataclass(frozen=True, eq=False)
class Verifier:
    """One trusted key: name, key id, signature type and the Ed25519 public key.

    Equal (and hashed) by name, key id, type and the raw key bytes.
    """

    name: str
    key_id: int
    sig_type: SignatureType
    public_key: Ed25519PublicKey

    def _identity(self) -> tuple[str, int, int, bytes]:
        return (self.name, self.key_id, int(self.sig_type), self.public_bytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verifier) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    @classmethod
    def for_key(cls, name: str, sig_type: SignatureType, key: Ed25519PublicKey) -> Verifier:
        if not is_valid_key_name(name):
            raise NoteError(f"invalid key name {name!r}")
        return cls(name, compute_key_id(name, sig_type, _raw(key)), sig_type, key)

    @cached_property
    def public_bytes(self) -> bytes:
        return _raw(self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key string `name+hex(id)+base64(type || key)`."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_bytes).decode()
        return f"{self.name}+{self.key_id:08x}+{material}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether `signature` (without the key id) is this key's over note `text`."""
        message = text
        if self.sig_type is SignatureType.cosignature_v1:
            if len(signature) != 8 + 64:
                return False
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > MAX_TIMESTAMP:
                return False
            message, signature = cosignature_message(text, timestamp), signature[8:]
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(vkey: str) -> Verifier:
    """A vkey string as `note.NewVerifier` reads it; NoteError names what is wrong."""
    name, _, rest = vkey.partition("+")
    hex_id, _, material64 = rest.partition("+")
    if not is_valid_key_name(name):
        raise NoteError(f"vkey {vkey!r}: invalid key name")
    if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
        raise NoteError(f"vkey {vkey!r}: the key id is not 8 hex digits")
    material = _b64decode(material64)
    if not material:
        raise NoteError(f"vkey {vkey!r}: no key material")
    key_id = int(hex_id, 16)
    if key_id != int.from_bytes(
        hashlib.sha256(name.encode() + b"\n" + material).digest()[:4], "big"
    ):
        raise NoteError(f"vkey {vkey!r}: the key id does not match the key")
    try:
        sig_type = SignatureType(material[0])
    except ValueError:
        raise NoteError(f"vkey {vkey!r}: unsupported signature type {material[0]:#04x}") from None
    if len(material) != 33:
        raise NoteError(f"vkey {vkey!r}: an Ed25519 key has 32 bytes")
    return Verifier(name, key_id, sig_type, Ed25519PublicKey.from_public_bytes(material[1:]))


@dataclass(frozen=True)
class Signer:
    """A private key that signs notes under a name (Ed25519 or cosignature/v1)."""

    name: str
    sig_type: SignatureType
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise NoteError(f"invalid key name {self.name!r}")

    @property
    def verifier(self) -> Verifier:
        return Verifier.for_key(self.name, self.sig_type, self.private_key.public_key())

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def sign(self, text: bytes, *, timestamp: int | None = None) -> bytes:
        """The signature bytes (without the key id) over note `text`.

        A cosignature needs the POSIX `timestamp` it states; an Ed25519 note signature
        takes none.
        """
        if self.sig_type is SignatureType.cosignature_v1:
            if timestamp is None or not 0 < timestamp <= MAX_TIMESTAMP:
                raise NoteError("a cosignature needs a timestamp in 1..2**63-1")
            message = cosignature_message(text, timestamp)
            return timestamp.to_bytes(8, "big") + self.private_key.sign(message)
        if timestamp is not None:
            raise NoteError("an Ed25519 note signature carries no timestamp")
        return self.private_key.sign(text)

    @property
    def skey(self) -> str:
        """Go's private key string `PRIVATE+KEY+name+hex(id)+base64(type || seed)`."""
        seed = self.private_key.private_bytes_raw()
        material = base64.b64encode(bytes([self.sig_type]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{material}"


def parse_skey(skey: str) -> Signer:
    """A signer key string as `note.NewSigner` reads it (the id is checked)."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise NoteError("a signer key starts PRIVATE+KEY+ and has five parts")
    _, _, name, hex_id, material64 = parts
    if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
        raise NoteError("the signer key id is not 8 hex digits")
    material = _b64decode(material64)
    if len(material) != 33:
        raise NoteError("an Ed25519 signer key holds a type byte and a 32-byte seed")
    try:
        sig_type = SignatureType(material[0])
    except ValueError:
        raise NoteError(f"unsupported signature type {material[0]:#04x}") from None
    signer = Signer(name, sig_type, Ed25519PrivateKey.from_private_bytes(material[1:]))
    if signer.key_id != int(hex_id, 16):
        raise NoteError("the signer key id does not match the key")
    return signer


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id and the signature bytes after the id."""

    name: str
    key_id: int
    signature: bytes

    @property
    def line(self) -> str:
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(raw).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) note: its text (final newline included) and lines."""

    text: bytes
    signatures: tuple[NoteSignature, ...]


def check_text(text: bytes) -> str:
    """A note text: UTF-8, no control character but newline, ending in a newline."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("a note must be UTF-8") from None
    if _CONTROL.search(decoded):
        raise NoteError("a note holds a control character other than newline")
    if not decoded.endswith("\n"):
        raise NoteError("a note text ends in a newline")
    return decoded


def parse_note(message: bytes) -> Note:
    """Split a signed note into text and signature lines, checking only the syntax."""
    decoded = check_text(message)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise NoteError("no blank line before the signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("the signature block is empty or does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"not a signature line: {line[:40]!r}")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        if not is_valid_key_name(name) or not b64:
            raise NoteError(f"malformed signature line for {name[:40]!r}")
        raw = _b64decode(b64)
        if len(raw) < 5:
            raise NoteError(f"the signature by {name!r} is too short")
        signatures.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return Note(text.encode("utf-8"), tuple(signatures))


@dataclass(frozen=True)
class OpenedNote:
    """A note whose known signatures all verified; unknown ones are kept aside."""

    text: bytes
    verified: tuple[tuple[Verifier, NoteSignature], ...]
    unverified: tuple[NoteSignature, ...]

    def verified_by(self, verifier: Verifier) -> NoteSignature | None:
        for known, sig in self.verified:
            if known == verifier:
                return sig
        return None


def open_note(
    message: bytes | Note, verifiers: Iterable[Verifier], *, require: bool = True
) -> OpenedNote:
    """Parse a note and verify every signature from a known key (`note.Open`).

    Raises NoteError if the note is malformed, if two known keys share a name and id,
    if a known key's signature fails, or (when `require`) if no known key signed.
    """
    known: dict[tuple[str, int], Verifier] = {}
    ambiguous: set[tuple[str, int]] = set()
    for v in verifiers:
        ident = (v.name, v.key_id)
        if ident in known and known[ident] != v:
            ambiguous.add(ident)
        known[ident] = v
    note = message if isinstance(message, Note) else parse_note(message)
    verified: list[tuple[Verifier, NoteSignature]] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, int]] = set()
    for sig in note.signatures:
        ident = (sig.name, sig.key_id)
        verifier = known.get(ident)
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if ident in ambiguous:
            raise NoteError(f"ambiguous key {sig.name}+{sig.key_id:08x}")
        if ident in seen:
            continue
        seen.add(ident)
        if not verifier.verify(note.text, sig.signature):
            raise InvalidSignatureError(sig.name, sig.key_id)
        verified.append((verifier, sig))
    if require and not verified:
        raise NoteError("note has no verifiable signatures")
    return OpenedNote(note.text, tuple(verified), tuple(unverified))


def format_note(text: bytes, signatures: Sequence[NoteSignature]) -> bytes:
    """A note from its text and signature lines (duplicates dropped, order kept)."""
    if not text.endswith(b"\n"):
        raise NoteError("a note text ends in a newline")
    if not signatures:
        raise NoteError("a note needs at least one signature")
    lines: list[str] = []
    for sig in signatures:
        if sig.line not in lines:
            lines.append(sig.line)
    return text + b"\n" + "".join(lines).encode("utf-8")


def sign_note(
    text: bytes, signer: Signer, *, timestamp: int | None = None, keep: Sequence[NoteSignature] = ()
) -> bytes:
    """Sign `text`, keeping the signatures in `keep` except an older one by this key."""
    check_text(text)
    raw = signer.sign(text, timestamp=timestamp)
    own = NoteSignature(signer.name, signer.key_id, raw)
    kept = [s for s in keep if (s.name, s.key_id) != (signer.name, signer.key_id)]
    return format_note(text, [*kept, own])
