"""Our age v1 stream writer and reader against the real `age` CLI and pyrage, both ways.

Interoperability is the test: whatever we write, `age -d` and `pyrage.decrypt` open;
whatever `age -r` and `pyrage.encrypt` write, we open. Then the attacks on a sealed
file on a stolen or tampered card: altered header, altered/reordered/appended chunks,
and truncation (which must yield only the authenticated prefix).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import pyrage
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.vault.ageheader import VERSION_LINE
from device.vault.agekeys import X25519Recipient, b64encode_nopad, hkdf_sha256
from device.vault.agestream import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    AgeStreamReader,
    AgeStreamWriter,
    decrypt_all,
)
from device.vault.errors import (
    AgeFormatError,
    InvalidAgeKey,
    NoMatchingIdentity,
    TamperedStream,
    TruncatedStream,
)
from device.vault.reseal import reseal
from tests.fixtures.vault import AgeKey

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 200_001]


def seal(data: bytes, recipients: list[str], pieces: int = 7) -> bytes:
    """Seal with our writer, pushing `data` in uneven pieces as an encoder would."""
    sink = io.BytesIO()
    writer = AgeStreamWriter(sink, recipients)
    pos, step = 0, max(1, len(data) // pieces)
    while pos < len(data):
        size = step + (pos % 1013)
        writer.write(data[pos : pos + size])
        pos += size
    writer.close()
    return sink.getvalue()


def collect(reader: AgeStreamReader, into: bytearray) -> None:
    """Drain `reader` into `into`, so a test sees what was yielded before an error."""
    for chunk in reader:
        into += chunk


def age_decrypt(ciphertext: bytes, key: AgeKey) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["age", "-d", "-i", str(key.path)], input=ciphertext, capture_output=True, check=False
    )


@pytest.mark.parametrize("size", SIZES)
def test_our_files_open_with_age_cli_and_pyrage(
    size: int, age_key: Callable[[str], AgeKey]
) -> None:
    owner, epoch = age_key("owner"), age_key("epoch")
    data = os.urandom(size)
    ciphertext = seal(data, [epoch.recipient, owner.recipient])
    for key in (owner, epoch):
        result = age_decrypt(ciphertext, key)
        assert result.returncode == 0, result.stderr
        assert result.stdout == data
        assert pyrage.decrypt(ciphertext, [pyrage.x25519.Identity.from_str(key.identity)]) == data


@pytest.mark.parametrize("size", SIZES)
def test_files_from_age_cli_and_pyrage_open_with_our_reader(
    size: int, age_key: Callable[[str], AgeKey]
) -> None:
    owner = age_key("owner")
    data = os.urandom(size)
    from_cli = subprocess.run(
        ["age", "-r", owner.recipient], input=data, capture_output=True, check=True
    ).stdout
    assert decrypt_all(io.BytesIO(from_cli), [owner.identity]) == data
    # pyrage (rage) adds a grease stanza of an unknown type: the reader must skip it
    from_pyrage = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(owner.recipient)])
    assert decrypt_all(io.BytesIO(from_pyrage), [owner.identity]) == data


def test_byte_at_a_time_and_one_big_write_give_the_same_plaintext(
    age_key: Callable[[str], AgeKey],
) -> None:
    owner = age_key("owner")
    data = os.urandom(CHUNK_SIZE + 300)
    sink = io.BytesIO()
    writer = AgeStreamWriter(sink, [owner.recipient])
    for i in range(len(data)):
        writer.write(data[i : i + 1])
    writer.close()
    big = seal(data, [owner.recipient], pieces=1)
    assert len(sink.getvalue()) == len(big)  # same chunking whatever the write sizes
    assert age_decrypt(sink.getvalue(), owner).stdout == data


def test_reader_yields_bounded_chunks(age_key: Callable[[str], AgeKey]) -> None:
    owner = age_key("owner")
    data = os.urandom(5 * CHUNK_SIZE + 17)
    chunks = list(AgeStreamReader(io.BytesIO(seal(data, [owner.recipient])), [owner.identity]))
    assert [len(c) for c in chunks] == [CHUNK_SIZE] * 5 + [17]
    assert b"".join(chunks) == data


def test_wrong_identity_is_refused(age_key: Callable[[str], AgeKey]) -> None:
    owner, stranger = age_key("owner"), age_key("stranger")
    ciphertext = seal(b"hello", [owner.recipient])
    with pytest.raises(NoMatchingIdentity):
        AgeStreamReader(io.BytesIO(ciphertext), [stranger.identity])


def test_altered_header_is_detected(age_key: Callable[[str], AgeKey]) -> None:
    owner = age_key("owner")
    ciphertext = bytearray(seal(b"x" * 1000, [owner.recipient, age_key("other").recipient]))
    # Attack: add a stanza of the attacker's own before the MAC line.
    mac_at = ciphertext.index(b"\n--- ") + 1
    args, body = X25519Recipient.parse(age_key("intruder").recipient).wrap(os.urandom(16))
    stanza = f"-> {' '.join(args)}\n{b64encode_nopad(body)}\n".encode("ascii")
    forged = ciphertext[:mac_at] + stanza + ciphertext[mac_at:]
    with pytest.raises(TamperedStream, match="MAC"):
        decrypt_all(io.BytesIO(bytes(forged)), [owner.identity])
    # A malformed stanza of a type the reader knows fails the header: never skipped.
    malformed = ciphertext[:mac_at] + b"-> X25519 AAAA\nAAAA\n" + ciphertext[mac_at:]
    with pytest.raises(AgeFormatError, match="share is 3 bytes") as caught:
        decrypt_all(io.BytesIO(bytes(malformed)), [owner.identity])
    assert not isinstance(caught.value, (TamperedStream, NoMatchingIdentity))
    flipped = bytearray(ciphertext)
    flipped[mac_at + 6] ^= 0x01  # a bit of the MAC itself
    with pytest.raises((TamperedStream, AgeFormatError)):
        decrypt_all(io.BytesIO(bytes(flipped)), [owner.identity])


def _file_with_stanzas(file_key: bytes, stanzas: list[bytes], plaintext: bytes) -> bytes:
    """A whole age file with these stanza lines, a valid MAC, and one final chunk."""
    mac_input = VERSION_LINE + b"\n" + b"".join(stanzas) + b"---"
    mac = hmac.new(hkdf_sha256(file_key, b"", b"header"), mac_input, hashlib.sha256).digest()
    nonce = os.urandom(16)
    payload = ChaCha20Poly1305(hkdf_sha256(file_key, nonce, b"payload")).encrypt(
        bytes(11) + b"\x01", plaintext, None)
    return mac_input + b" " + b64encode_nopad(mac).encode() + b"\n" + nonce + payload


def test_a_malformed_x25519_stanza_fails_the_header_even_beside_one_that_opens(
    age_key: Callable[[str], AgeKey],
) -> None:
    """A reader that skipped the malformed stanza would open this file (its MAC is
    valid and the second stanza is the owner's); age refuses it, and so does ours."""
    owner = age_key("owner")
    file_key = os.urandom(16)
    args, body = X25519Recipient.parse(owner.recipient).wrap(file_key)
    good = f"-> {' '.join(args)}\n{b64encode_nopad(body)}\n".encode()
    bad = f"-> {' '.join(args)} extra\n{b64encode_nopad(body)}\n".encode()
    control = _file_with_stanzas(file_key, [good], b"door")
    assert decrypt_all(io.BytesIO(control), [owner.identity]) == b"door"
    assert age_decrypt(control, owner).stdout == b"door"
    hostile = _file_with_stanzas(file_key, [bad, good], b"door")
    with pytest.raises(AgeFormatError, match="2 arguments") as caught:
        AgeStreamReader(io.BytesIO(hostile), [owner.identity])
    assert not isinstance(caught.value, (TamperedStream, NoMatchingIdentity))
    assert age_decrypt(hostile, owner).returncode != 0


def _payload_start(ciphertext: bytes) -> int:
    return (
        ciphertext.index(b"\n--- ")
        + 1
        + ciphertext[ciphertext.index(b"\n--- ") + 1 :].index(b"\n")
        + 1
        + 16
    )


def test_flipped_payload_byte_is_tampering_and_nothing_after_it_is_yielded(
    age_key: Callable[[str], AgeKey],
) -> None:
    owner = age_key("owner")
    data = os.urandom(3 * CHUNK_SIZE + 5)
    ciphertext = bytearray(seal(data, [owner.recipient]))
    start = _payload_start(bytes(ciphertext))
    ciphertext[start + ENCRYPTED_CHUNK_SIZE + 100] ^= 0x80  # inside chunk 1
    got = bytearray()
    with pytest.raises(TamperedStream) as caught:
        collect(AgeStreamReader(io.BytesIO(bytes(ciphertext)), [owner.identity]), got)
    assert bytes(got) == data[:CHUNK_SIZE]
    assert caught.value.verified_bytes == CHUNK_SIZE
    assert age_decrypt(bytes(ciphertext), owner).returncode != 0


def test_reordered_chunks_and_appended_bytes_are_tampering(
    age_key: Callable[[str], AgeKey],
) -> None:
    owner = age_key("owner")
    data = os.urandom(3 * CHUNK_SIZE + 5)
    ciphertext = seal(data, [owner.recipient])
    start = _payload_start(ciphertext)
    c0 = ciphertext[start : start + ENCRYPTED_CHUNK_SIZE]
    c1 = ciphertext[start + ENCRYPTED_CHUNK_SIZE : start + 2 * ENCRYPTED_CHUNK_SIZE]
    swapped = ciphertext[:start] + c1 + c0 + ciphertext[start + 2 * ENCRYPTED_CHUNK_SIZE :]
    with pytest.raises(TamperedStream):
        decrypt_all(io.BytesIO(swapped), [owner.identity])
    # Attack: append a copy of a chunk after the final one (extension)
    with pytest.raises(TamperedStream):
        decrypt_all(io.BytesIO(ciphertext + c0), [owner.identity])


@pytest.mark.parametrize("cut_chunks", [1, 2])
def test_truncation_at_a_chunk_boundary_yields_the_verified_prefix(
    cut_chunks: int, age_key: Callable[[str], AgeKey]
) -> None:
    owner = age_key("owner")
    data = os.urandom(3 * CHUNK_SIZE + 999)
    ciphertext = seal(data, [owner.recipient])
    cut = ciphertext[: _payload_start(ciphertext) + cut_chunks * ENCRYPTED_CHUNK_SIZE]
    got = bytearray()
    with pytest.raises(TruncatedStream) as caught:
        collect(AgeStreamReader(io.BytesIO(cut), [owner.identity]), got)
    assert bytes(got) == data[: cut_chunks * CHUNK_SIZE]
    assert caught.value.verified_bytes == cut_chunks * CHUNK_SIZE
    # age itself streams the authenticated chunks, then fails with "unexpected EOF"
    result = age_decrypt(cut, owner)
    assert result.returncode == 1
    assert b"unexpected EOF" in result.stderr
    assert data.startswith(result.stdout)


def test_truncation_inside_a_chunk_yields_the_whole_chunks_before_it(
    age_key: Callable[[str], AgeKey],
) -> None:
    owner = age_key("owner")
    data = os.urandom(3 * CHUNK_SIZE + 999)
    ciphertext = seal(data, [owner.recipient])
    cut = ciphertext[: _payload_start(ciphertext) + 2 * ENCRYPTED_CHUNK_SIZE + 5000]
    got = bytearray()
    with pytest.raises(TruncatedStream) as caught:
        collect(AgeStreamReader(io.BytesIO(cut), [owner.identity]), got)
    assert bytes(got) == data[: 2 * CHUNK_SIZE]
    assert caught.value.verified_bytes == 2 * CHUNK_SIZE
    result = age_decrypt(cut, owner)
    assert result.returncode == 1
    assert b"failed to decrypt and authenticate payload chunk" in result.stderr
    assert data.startswith(result.stdout)


def test_truncated_header_and_empty_file_are_format_errors(
    age_key: Callable[[str], AgeKey],
) -> None:
    owner = age_key("owner")
    ciphertext = seal(b"abc", [owner.recipient])
    for cut in (b"", ciphertext[:10], ciphertext[: ciphertext.index(b"\n--- ") + 3]):
        with pytest.raises(AgeFormatError):
            decrypt_all(io.BytesIO(cut), [owner.identity])
    # A missing or short payload nonce is a header failure, as in age.
    for cut in (ciphertext[: _payload_start(ciphertext) - 16],
                ciphertext[: _payload_start(ciphertext) - 3]):
        with pytest.raises(AgeFormatError, match="payload nonce"):
            AgeStreamReader(io.BytesIO(cut), [owner.identity])


def test_armored_and_foreign_files_get_a_clear_error(age_key: Callable[[str], AgeKey]) -> None:
    owner = age_key("owner")
    armored = subprocess.run(
        ["age", "-a", "-r", owner.recipient], input=b"x", capture_output=True, check=True
    ).stdout
    with pytest.raises(AgeFormatError, match="armored"):
        AgeStreamReader(io.BytesIO(armored), [owner.identity])
    with pytest.raises(AgeFormatError, match="not an age v1 file"):
        AgeStreamReader(io.BytesIO(b"\x00\x00\x00\x18ftypisom" + bytes(100)), [owner.identity])


def test_bad_key_strings_are_refused_with_the_reason(age_key: Callable[[str], AgeKey]) -> None:
    owner = age_key("owner")
    typo = owner.recipient[:-1] + ("q" if owner.recipient[-1] != "q" else "p")
    with pytest.raises(InvalidAgeKey, match="checksum"):
        AgeStreamWriter(io.BytesIO(), [typo])
    with pytest.raises(InvalidAgeKey):
        AgeStreamWriter(io.BytesIO(), [])
    with pytest.raises(InvalidAgeKey):
        AgeStreamWriter(io.BytesIO(), [owner.identity])  # an identity is not a recipient
    with pytest.raises(InvalidAgeKey):
        AgeStreamReader(io.BytesIO(b""), [owner.recipient])  # nor the other way round
    with pytest.raises(InvalidAgeKey, match="mix"):
        AgeStreamWriter(io.BytesIO(), ["Age1" + owner.recipient[4:]])


def test_identity_file_text_is_accepted(age_key: Callable[[str], AgeKey]) -> None:
    owner = age_key("owner")
    ciphertext = seal(b"door", [owner.recipient])
    assert decrypt_all(io.BytesIO(ciphertext), [owner.path.read_text()]) == b"door"


def test_reseal_streams_to_the_new_recipient(age_key: Callable[[str], AgeKey]) -> None:
    epoch, agency = age_key("epoch"), age_key("agency")
    data = os.urandom(4 * CHUNK_SIZE + 123)
    source = seal(data, [epoch.recipient])
    sink = io.BytesIO()
    result = reseal(io.BytesIO(source), sink, [epoch.identity], [agency.recipient])
    out = sink.getvalue()
    assert result == (len(out), hashlib.sha256(out).hexdigest())
    assert age_decrypt(out, agency).stdout == data
    with pytest.raises(NoMatchingIdentity):
        reseal(io.BytesIO(out), io.BytesIO(), [epoch.identity], [agency.recipient])


def test_writers_open_at_once_on_one_thread_keep_their_own_batches(
    age_key: Callable[[str], AgeKey],
) -> None:
    """A closed writer's ciphertext batch goes to the thread's next writer, but two
    writers open at once never share one: here one writer's sink is another writer,
    which seals the first one's batch while the first still reads from it. A writer
    closed on another thread leaves a whole file."""
    key = age_key("batches")
    with AgeStreamWriter(io.BytesIO(), [key.recipient]) as done:  # leaves a spare batch
        done.write(os.urandom(300_000))
    plain = os.urandom(3 * 1024 * 1024 + 5)
    outer_sink = io.BytesIO()
    outer = AgeStreamWriter(outer_sink, [key.recipient])
    inner = AgeStreamWriter(outer, [key.recipient])
    for pos in range(0, len(plain), 300_001):
        inner.write(plain[pos : pos + 300_001])
    inner.close()
    closer = threading.Thread(target=outer.close)
    closer.start()
    closer.join()
    identity = [pyrage.x25519.Identity.from_str(key.identity)]
    assert pyrage.decrypt(pyrage.decrypt(outer_sink.getvalue(), identity), identity) == plain


_FAULTS = """
import os, resource, sys
from device.malloc import tune_malloc
if not tune_malloc():
    print("no-mallopt"); sys.exit(0)
from device.vault.agestream import AgeStreamWriter
class Discard:
    def write(self, data):
        return len(data)
data = memoryview(os.urandom(2 * 1024 * 1024))
def one():
    with AgeStreamWriter(Discard(), [sys.argv[1]]) as writer:
        writer.write(data)
one()
before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
for _ in range(8):
    one()
print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
"""


def test_a_thread_sealing_file_after_file_maps_no_new_batch(
    age_key: Callable[[str], AgeKey],
) -> None:
    """Under the agent's fixed mmap threshold a fresh 1 MiB batch per file is a fresh
    mapping: 256 page faults each. Eight files after the first fault in less than one."""
    key = age_key("faults")
    proc = subprocess.run([sys.executable, "-c", _FAULTS, key.recipient],
                          capture_output=True, text=True, check=True)
    if proc.stdout.strip() == "no-mallopt":
        pytest.skip("this C library has no mallopt: the agent runs with its own defaults")
    assert int(proc.stdout) < 256, proc.stdout


def test_reseal_of_a_truncated_clip_refuses_unless_asked(
    age_key: Callable[[str], AgeKey],
) -> None:
    epoch, agency = age_key("epoch"), age_key("agency")
    data = os.urandom(3 * CHUNK_SIZE + 10)
    source = seal(data, [epoch.recipient])
    cut = source[: _payload_start(source) + 2 * ENCRYPTED_CHUNK_SIZE + 7]
    half = io.BytesIO()
    with pytest.raises(TruncatedStream):
        reseal(io.BytesIO(cut), half, [epoch.identity], [agency.recipient])
    assert age_decrypt(half.getvalue(), agency).returncode != 0  # never looks complete
    sink = io.BytesIO()
    reseal(io.BytesIO(cut), sink, [epoch.identity], [agency.recipient], allow_truncated=True)
    assert age_decrypt(sink.getvalue(), agency).stdout == data[: 2 * CHUNK_SIZE]


_FUZZ_IDENTITY = pyrage.x25519.Identity.generate()
_FUZZ_PLAIN = os.urandom(2 * CHUNK_SIZE + 77)
_FUZZ_FILE = seal(_FUZZ_PLAIN, [str(_FUZZ_IDENTITY.to_public())])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_FUZZ_FILE) - 1), st.integers(1, 255)), max_size=4
    ),
    cut=st.integers(0, len(_FUZZ_FILE)),
    garbage=st.binary(max_size=300),
)
def test_hostile_bytes_only_ever_raise_format_errors(
    edits: list[tuple[int, int]], cut: int, garbage: bytes
) -> None:
    """A stolen or tampered card: flipped bytes, cuts, appended garbage, pure garbage.

    The reader either returns the exact plaintext or raises AgeFormatError; never another
    exception, never a wrong plaintext.
    """
    data = bytearray(_FUZZ_FILE)
    for position, mask in edits:
        data[position] ^= mask
    for candidate in (bytes(data[:cut]) + garbage, garbage):
        try:
            got = decrypt_all(io.BytesIO(candidate), [str(_FUZZ_IDENTITY)])
        except AgeFormatError:
            continue
        assert got == _FUZZ_PLAIN
