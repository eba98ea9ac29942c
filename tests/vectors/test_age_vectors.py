"""The device's age reader against age's own conformance vectors (C2SP/CCTV, `age/`).

Each file in `age/testdata/` is one vector: a textual header (`expect:`, `payload:`,
`identity:`, `armored:`, `compressed:`, ...), an empty line, then an age file. The
runner opens the file with `AgeStreamReader` and the vector's X25519 identities and
maps what happens to the vectors' outcomes:

- the constructor (which parses and authenticates the header) raises
  `ArmoredAgeFile` -> armor failure, `NoMatchingIdentity` -> no match,
  `TamperedStream` (the header MAC) -> HMAC failure, any other `AgeFormatError` ->
  header failure;
- iterating raises any `AgeFormatError` -> payload failure;
- iterating to the end -> success.

All plaintext the reader yielded, also before a payload failure, must hash to the
vector's `payload:`. Where the reader deliberately differs from age, the vector is
listed in `DIFFERENCES` with what the reader does instead; `age/README.md` has the
table and the reasons.
"""

from __future__ import annotations

import enum
import hashlib
import io
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest

from device.vault.agestream import CHUNK_SIZE, AgeStreamReader
from device.vault.errors import (
    AgeFormatError,
    ArmoredAgeFile,
    NoMatchingIdentity,
    TamperedStream,
)

TESTDATA = Path(__file__).resolve().parent / "age" / "testdata"
KNOWN_KEYS = frozenset(
    {"expect", "payload", "file key", "identity", "passphrase", "armored", "compressed",
     "comment"}
)
X25519_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
STRANGER = str(pyrage.x25519.Identity.generate())


class Outcome(enum.Enum):
    SUCCESS = "success"
    NO_MATCH = "no match"
    HMAC_FAILURE = "HMAC failure"
    HEADER_FAILURE = "header failure"
    PAYLOAD_FAILURE = "payload failure"
    ARMOR_FAILURE = "armor failure"


@dataclass(frozen=True)
class Vector:
    name: str
    expect: Outcome
    payload_sha256: str | None
    identities: list[str]
    armored: bool
    age_file: bytes


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    released: bytes
    error: str


@dataclass(frozen=True)
class Difference:
    """What the reader does instead of what age does, on purpose."""

    outcome: Outcome
    released_sha256: str
    why: str


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ARMOR = "armored files are not read: clips and deliveries are binary age"
_NOT_AGE = "armored files are not read; this one is not even armor, so not age at all"
_AFTER_FINAL = "no plaintext of the final chunk is released when bytes follow it"
# The first 64 KiB chunk of the plaintext of stream_two_final_chunks_second, which
# this reader releases before it finds a second final chunk (age releases that too).
_FIRST_CHUNK_SHA256 = "a68cb6fa0b2e2a8d1abd54fcb26ff31fe16166ed38688bffa681e617813b781a"

# Every vector whose outcome here is not age's, with the reason (age/README.md).
DIFFERENCES: dict[str, Difference] = {
    **{
        name: Difference(Outcome.ARMOR_FAILURE, _EMPTY_SHA256, _ARMOR)
        for name in (
            "armor_crlf",
            "armor_empty",
            "armor_full_last_line",
            "armor_garbage_encoded",
            "armor_header_crlf",
            "armor_no_eol",
            "armor_no_match",
            "armor_x25519",
        )
    },
    **{
        name: Difference(Outcome.HEADER_FAILURE, _EMPTY_SHA256, _NOT_AGE)
        for name in (
            "armor_garbage_leading",
            "armor_lowercase",
            "armor_whitespace_begin",
            "armor_whitespace_outside",
            "armor_wrong_type",
        )
    },
    **{
        name: Difference(Outcome.PAYLOAD_FAILURE, _EMPTY_SHA256, _AFTER_FINAL)
        for name in (
            "stream_trailing_garbage_long",
            "stream_trailing_garbage_short",
            "stream_two_final_chunks",
            "stream_two_final_chunks_full",
        )
    },
    "stream_two_final_chunks_second": Difference(
        Outcome.PAYLOAD_FAILURE, _FIRST_CHUNK_SHA256, _AFTER_FINAL
    ),
}


def load(path: Path) -> Vector:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no empty line after the vector's header"
    fields: dict[str, list[str]] = {}
    for line in head.decode("utf-8").splitlines():
        key, colon, value = line.partition(": ")
        assert colon, f"{path.name}: header line {line!r} is not 'key: value'"
        assert key in KNOWN_KEYS, f"{path.name}: unknown vector key {key!r}"
        fields.setdefault(key, []).append(value)
    compressed = fields.get("compressed", [None])[0]
    if compressed is not None:
        assert compressed == "zlib", f"{path.name}: unknown compression {compressed!r}"
        body = zlib.decompress(body)
    return Vector(
        name=path.name,
        expect=Outcome(fields["expect"][0]),
        payload_sha256=fields.get("payload", [None])[0],
        identities=fields.get("identity", []),
        armored=fields.get("armored", ["no"])[0] == "yes",
        age_file=body,
    )


def run(vector: Vector) -> Result:
    """Open the vector's file with the reader and the vector's X25519 identities.

    A vector without identities tests a structure refused before any key is used; the
    reader, which needs one, gets a stranger's."""
    identities = [i for i in vector.identities if i.startswith(X25519_IDENTITY_PREFIX)]
    identities = identities or [STRANGER]
    try:
        reader = AgeStreamReader(io.BytesIO(vector.age_file), identities)
    except ArmoredAgeFile as exc:
        return Result(Outcome.ARMOR_FAILURE, b"", str(exc))
    except NoMatchingIdentity as exc:
        return Result(Outcome.NO_MATCH, b"", str(exc))
    except TamperedStream as exc:
        return Result(Outcome.HMAC_FAILURE, b"", str(exc))
    except AgeFormatError as exc:
        return Result(Outcome.HEADER_FAILURE, b"", str(exc))
    released = bytearray()
    try:
        for chunk in reader:
            released += chunk
    except AgeFormatError as exc:
        return Result(Outcome.PAYLOAD_FAILURE, bytes(released), str(exc))
    return Result(Outcome.SUCCESS, bytes(released), "")


def applies(path: Path) -> bool:
    """A vector for an X25519 reader: its identities include X25519 ones, or it has none
    (a structure the reader must refuse before any key is used)."""
    identities = load(path).identities
    return not identities or any(i.startswith(X25519_IDENTITY_PREFIX) for i in identities)


VECTOR_FILES = sorted(p for p in TESTDATA.iterdir() if p.is_file())


def test_the_vendored_vectors_are_all_here() -> None:
    # 66 binary X25519 files, 31 armored ones, the empty file, and two files whose
    # other identity (hybrid, scrypt) does not change the outcome for an X25519 reader.
    assert len(VECTOR_FILES) == 100
    assert all(applies(p) for p in VECTOR_FILES)
    assert set(DIFFERENCES) <= {p.name for p in VECTOR_FILES}


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[p.name for p in VECTOR_FILES])
def test_age_vector(path: Path) -> None:
    vector = load(path)
    result = run(vector)
    difference = DIFFERENCES.get(vector.name)
    if difference is not None:
        assert difference.outcome is not vector.expect or vector.payload_sha256 not in (
            None,
            difference.released_sha256,
        ), f"{vector.name} is listed as a difference but agrees with age"
        assert result.outcome is difference.outcome, result.error
        assert hashlib.sha256(result.released).hexdigest() == difference.released_sha256
        return
    assert result.outcome is vector.expect, result.error
    if vector.expect in (Outcome.SUCCESS, Outcome.PAYLOAD_FAILURE):
        assert vector.payload_sha256 is not None
        assert hashlib.sha256(result.released).hexdigest() == vector.payload_sha256
    else:
        assert result.released == b""


AFTER_FINAL = sorted(n for n, d in DIFFERENCES.items() if d.why == _AFTER_FINAL)


@pytest.mark.parametrize("name", AFTER_FINAL)
def test_after_the_final_chunk_this_reader_releases_less_than_age(
    name: str, tmp_path: Path
) -> None:
    """Stricter, never looser: what the reader releases is what age releases less the
    authenticated final chunk, and both refuse the file."""
    vector = load(TESTDATA / name)
    key = tmp_path / "key"
    key.write_text("\n".join(vector.identities) + "\n")
    age = subprocess.run(["age", "-d", "-i", str(key)], input=vector.age_file,
                         capture_output=True, check=False)
    assert age.returncode != 0
    assert hashlib.sha256(age.stdout).hexdigest() == vector.payload_sha256
    ours = run(vector).released
    assert age.stdout.startswith(ours)
    assert 0 < len(age.stdout) - len(ours) <= CHUNK_SIZE
