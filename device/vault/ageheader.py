"""The age v1 header (https://age-encryption.org/v1, section "Header"): build and parse.

A header is the version line, one stanza per recipient (``-> type args...`` and a
base64 body wrapped at 64 columns whose last line is shorter than 64), and the MAC line
``--- <base64 HMAC-SHA256>`` keyed by HKDF(file key, "", "header") over everything up to
and including ``---``. Parsing is bounded (line length, stanza count) because the bytes
may come from a tampered card or a hostile upload.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from device.vault.agekeys import (
    FILE_KEY_SIZE,
    X25519Identity,
    X25519Recipient,
    X25519Stanza,
    b64decode_nopad,
    b64encode_nopad,
    hkdf_sha256,
)
from device.vault.errors import (
    AgeFormatError,
    ArmoredAgeFile,
    NoMatchingIdentity,
    TamperedStream,
)

VERSION_LINE = b"age-encryption.org/v1"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
MAX_LINE = 4096
MAX_STANZAS = 64
MAX_HEADER = 256 * 1024
_COLUMNS = 64
X25519_TYPE = "X25519"
SCRYPT_TYPE = "scrypt"  # age's passphrase stanza, which must be alone in a header


@dataclass(frozen=True, slots=True)
class Stanza:
    type: str
    args: list[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    stanzas: list[Stanza]
    mac: bytes
    mac_input: bytes  # header bytes up to and including "---"
    length: int  # bytes of the whole header, including the MAC line's newline


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    key = hkdf_sha256(file_key, b"", b"header")
    return hmac.new(key, mac_input, sha256).digest()


def _wrap_body(body: bytes) -> bytes:
    text = b64encode_nopad(body).encode("ascii")
    lines = [text[i : i + _COLUMNS] for i in range(0, len(text), _COLUMNS)]
    if not lines or len(lines[-1]) == _COLUMNS:
        lines.append(b"")  # the final body line is always shorter than 64 columns
    return b"".join(line + b"\n" for line in lines)


def build_header(file_key: bytes, recipients: Sequence[X25519Recipient]) -> bytes:
    """The complete header (ending in ``\\n``) sealing `file_key` to every recipient."""
    parts = [VERSION_LINE + b"\n"]
    for recipient in recipients:
        args, body = recipient.wrap(file_key)
        parts.append(b"-> " + " ".join(args).encode("ascii") + b"\n" + _wrap_body(body))
    mac_input = b"".join(parts) + b"---"
    mac = _header_mac(file_key, mac_input)
    return mac_input + b" " + b64encode_nopad(mac).encode("ascii") + b"\n"


def _is_arg(arg: str) -> bool:
    return bool(arg) and all(33 <= ord(c) <= 126 for c in arg)


def parse_header(lines: Sequence[bytes]) -> ParsedHeader:
    """Parse header lines (each without its ``\\n``), the MAC line last.

    Raises AgeFormatError naming the first thing that is wrong.
    """
    if not lines or lines[0] != VERSION_LINE:
        if lines and lines[0].startswith(ARMOR_BEGIN):
            raise ArmoredAgeFile("ASCII-armored age files are not supported; use the binary form")
        raise AgeFormatError("not an age v1 file (missing 'age-encryption.org/v1')")
    stanzas: list[Stanza] = []
    i = 1
    consumed = len(lines[0]) + 1
    while i < len(lines):
        line = lines[i]
        if line.startswith(b"--- "):
            mac = b64decode_nopad(line[4:].decode("ascii", "replace"))
            if mac is None or len(mac) != 32 or i != len(lines) - 1:
                raise AgeFormatError("age header MAC line is malformed")
            mac_input = b"".join(ln + b"\n" for ln in lines[:i]) + b"---"
            return ParsedHeader(stanzas, mac, mac_input, consumed + len(line) + 1)
        if not line.startswith(b"-> "):
            raise AgeFormatError(f"age header line {i + 1} is neither a stanza nor the MAC")
        try:
            args = line[3:].decode("ascii").split(" ")
        except UnicodeDecodeError:
            raise AgeFormatError(f"age stanza on line {i + 1} is not ASCII") from None
        if not all(_is_arg(a) for a in args):
            raise AgeFormatError(f"age stanza on line {i + 1} has an empty or invalid argument")
        consumed += len(line) + 1
        i += 1
        body = bytearray()
        while True:
            if i >= len(lines):
                raise AgeFormatError("age header ends inside a stanza body")
            body_line = lines[i]
            decoded = b64decode_nopad(body_line.decode("ascii", "replace"))
            if len(body_line) > _COLUMNS or decoded is None:
                raise AgeFormatError(f"age stanza body line {i + 1} is not canonical base64")
            body += decoded
            consumed += len(body_line) + 1
            i += 1
            if len(body_line) < _COLUMNS:
                break
        stanzas.append(Stanza(args[0], args[1:], bytes(body)))
        if len(stanzas) > MAX_STANZAS:
            raise AgeFormatError(f"age header has more than {MAX_STANZAS} stanzas")
    raise AgeFormatError("age header has no MAC line")


def unwrap_file_key(header: ParsedHeader, identities: Sequence[X25519Identity]) -> bytes:
    """Find the file key with one of `identities` and check the header MAC with it.

    Every stanza of a type this reader knows is checked before any key is tried: a
    malformed X25519 stanza, or an scrypt stanza beside others, fails the header
    (AgeFormatError) wherever it stands. Stanzas of other types (rage's grease, other
    recipient types) are skipped, as age does. Raises AgeFormatError, NoMatchingIdentity,
    or TamperedStream when the MAC does not match.
    """
    x25519: list[X25519Stanza] = []
    for stanza in header.stanzas:
        if stanza.type == X25519_TYPE:
            x25519.append(X25519Stanza.parse(stanza.args, stanza.body))
        elif stanza.type == SCRYPT_TYPE and len(header.stanzas) > 1:
            raise AgeFormatError("age header has an scrypt stanza beside others")
    for parsed in x25519:
        for identity in identities:
            file_key = identity.unwrap(parsed)
            if file_key is None:
                continue
            if len(file_key) != FILE_KEY_SIZE:  # unreachable: the body length fixes it
                raise AgeFormatError("age X25519 stanza holds a file key of the wrong size")
            if not hmac.compare_digest(_header_mac(file_key, header.mac_input), header.mac):
                raise TamperedStream("age header MAC does not match: header altered", 0)
            return file_key
    raise NoMatchingIdentity("no identity given opens this age file")


def header_length(prefix: bytes) -> int | None:
    """Length of the header at the start of `prefix` without any key, or None.

    Used by recovery, which has no key: it tells how many bytes a `.part` holds beyond
    its header. None when `prefix` holds no complete, well-formed header.
    """
    lines: list[bytes] = []
    start = 0
    while start < len(prefix) and start < MAX_HEADER:
        end = prefix.find(b"\n", start, start + MAX_LINE + 1)
        if end < 0:
            return None
        lines.append(prefix[start:end])
        start = end + 1
        if lines[-1].startswith(b"--- "):
            try:
                return parse_header(lines).length
            except AgeFormatError:
                return None
    return None
