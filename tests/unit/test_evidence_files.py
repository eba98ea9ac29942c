"""The staging files' running SHA-256 (cloud_stub/store/evidence_files.py), on real files.

What the manifest check relies on: `staged_digest` answers the SHA-256 of exactly the
bytes on disk. It answers from the hash carried along with the appends when that hash
covers exactly the file's size, and reads the file back otherwise: after a restart (a
fresh `EvidenceFiles`), after an append that failed half way, for a size the running
hash does not cover, and after `discard_staging`. The refusals (`WrongOffset`,
`TooLarge`) still come before anything is written. Which path answered is made visible
by replacing `EvidenceFiles.digest` (the read-back) with a spy or with a function that
fails the test.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cloud_stub.errors import Conflict, EnvironmentFault, TooLarge
from cloud_stub.store.evidence_files import EvidenceFiles, HashState, WrongOffset

JTI = "0f8fad5b-d9cb-469f-a165-70867728950e"
OTHER_JTI = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
CLIP = "clip-0001"
CAP = 10 * 1024 * 1024
CHUNKS = (os.urandom(70_000), os.urandom(1), os.urandom(123_457), b"", os.urandom(4096))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DigestSpy:
    """What replaced `EvidenceFiles.digest` saw: each staging file read back, in order."""

    def __init__(self) -> None:
        self.paths: list[Path] = []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "evidence"


@pytest.fixture
def digest_spy(monkeypatch: pytest.MonkeyPatch) -> DigestSpy:
    spy = DigestSpy()
    real = EvidenceFiles.digest

    def digest(files: EvidenceFiles, path: Path) -> str:
        spy.paths.append(path)
        return real(files, path)

    monkeypatch.setattr(EvidenceFiles, "digest", digest)
    return spy


@pytest.fixture
def no_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read-back of a staging file fails the test: only the running hash may answer."""

    def refuse(files: EvidenceFiles, path: Path) -> str:
        raise AssertionError(f"{path.name} was read back although the running hash covers it")

    monkeypatch.setattr(EvidenceFiles, "digest", refuse)


class CountingHash:
    """A `HashState` that records whether the files copied it (instead of re-hashing)."""

    def __init__(self, data: bytes) -> None:
        self.inner = hashlib.sha256(data)
        self.copies = 0

    def update(self, data: bytes, /) -> None:
        self.inner.update(data)

    def copy(self) -> HashState:
        self.copies += 1
        return self.inner.copy()

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


def append_all(files: EvidenceFiles, chunks: tuple[bytes, ...], *, clip: str = CLIP,
               jti: str = JTI, with_hash: bool = False) -> bytes:
    held = b""
    for chunk in chunks:
        data_hash = hashlib.sha256(chunk) if with_hash else None
        assert files.append(jti, clip, len(held), chunk, CAP, data_hash) == len(held) + len(chunk)
        held += chunk
    return held


@pytest.mark.parametrize("with_hash", [False, True], ids=["hashed-here", "body-hash-given"])
def test_the_running_hash_is_the_files_sha256(root: Path, with_hash: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Several appends (one of them empty): the answer is the sha256 of the file on disk,
    and it comes from memory (a read-back would fail the test)."""
    files = EvidenceFiles(root)
    held = append_all(files, CHUNKS, with_hash=with_hash)
    path = files.staging_path(JTI, CLIP)
    assert path.read_bytes() == held
    real_digest = EvidenceFiles.digest

    def refuse(files: EvidenceFiles, path: Path) -> str:
        raise AssertionError("read back although the running hash covers the file")

    monkeypatch.setattr(EvidenceFiles, "digest", refuse)
    assert files.staged_digest(JTI, CLIP, path.stat().st_size) == sha(held)
    assert real_digest(files, path) == sha(held)  # the read-back agrees


def test_the_body_hash_is_continued_not_recomputed_nor_mutated(
    root: Path, no_read_back: None
) -> None:
    """The first append takes a copy of the request body's hash state: the running hash
    starts from it, and later appends do not change the caller's object."""
    files = EvidenceFiles(root)
    first = os.urandom(5000)
    body_hash = CountingHash(first)
    files.append(JTI, CLIP, 0, first, CAP, body_hash)
    assert body_hash.copies == 1
    second = os.urandom(3000)
    files.append(JTI, CLIP, len(first), second, CAP, hashlib.sha256(second))
    assert body_hash.hexdigest() == sha(first)  # the body's state is the body's alone
    assert files.staged_digest(JTI, CLIP, 8000) == sha(first + second)


def test_the_body_hash_is_what_the_running_hash_starts_from(root: Path,
                                                            no_read_back: None) -> None:
    """Proof that the given state is used as is: a state over other bytes gives their
    digest from memory (the caller vouches for it; evidence.py passes the body's own)."""
    files = EvidenceFiles(root)
    files.append(JTI, CLIP, 0, b"the bytes on disk", CAP, hashlib.sha256(b"other bytes"))
    assert files.staged_digest(JTI, CLIP, len(b"the bytes on disk")) == sha(b"other bytes")


def test_after_a_restart_the_file_is_read_back(root: Path, digest_spy: DigestSpy) -> None:
    """A fresh `EvidenceFiles` over the same directory holds no running hash: the digest
    is read from the file, also after more appends continue the upload."""
    before = append_all(EvidenceFiles(root), CHUNKS[:2])
    files = EvidenceFiles(root)  # the service restarted
    path = files.staging_path(JTI, CLIP)
    assert files.staged_digest(JTI, CLIP, len(before)) == sha(before)
    assert digest_spy.paths == [path]
    # the upload continues at the held offset: the new bytes alone are no file's hash
    rest = CHUNKS[2]
    files.append(JTI, CLIP, len(before), rest, CAP, hashlib.sha256(rest))
    assert files.staged_digest(JTI, CLIP, len(before + rest)) == sha(before + rest)
    assert digest_spy.paths == [path, path]
    assert path.read_bytes() == before + rest


def test_a_file_altered_on_disk_across_a_restart_is_caught(root: Path) -> None:
    """Same size, one bit flipped while the service was down: the digest is the altered
    file's, so the manifest's hash check refuses it."""
    original = append_all(EvidenceFiles(root), CHUNKS)
    files = EvidenceFiles(root)
    path = files.staging_path(JTI, CLIP)
    altered = bytearray(original)
    altered[len(altered) // 2] ^= 0x01
    path.write_bytes(bytes(altered))
    digest = files.staged_digest(JTI, CLIP, path.stat().st_size)
    assert digest != sha(original)
    assert digest == sha(bytes(altered))


def test_a_size_the_running_hash_does_not_cover_is_read_back(
    root: Path, digest_spy: DigestSpy
) -> None:
    """The running hash answers only for exactly the bytes it covers; the file grown
    behind its back (or any other size) is hashed from disk."""
    files = EvidenceFiles(root)
    held = append_all(files, CHUNKS[:3])
    path = files.staging_path(JTI, CLIP)
    assert files.staged_digest(JTI, CLIP, len(held)) == sha(held)
    assert digest_spy.paths == []  # positive control: the in-memory path answered
    with path.open("ab") as fh:
        fh.write(b"appended behind the service's back")
    grown = path.read_bytes()
    assert files.staged_digest(JTI, CLIP, len(grown)) == sha(grown)
    assert digest_spy.paths == [path]
    # a clip with no running hash at all
    other = files.staging_path(JTI, "clip-0002")
    other.write_bytes(b"staged by hand")
    assert files.staged_digest(JTI, "clip-0002", other.stat().st_size) == sha(b"staged by hand")
    assert digest_spy.paths == [path, other]


@pytest.fixture
def half_write(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`os.write` writes half of what it is given, then fails with ENOSPC, while armed
    (arm by appending a count of failures to the yielded list)."""
    real_write = os.write
    armed: list[int] = []
    state = {"wrote": False}

    def write(fd: int, data: bytes | memoryview, /) -> int:
        if not armed:
            return real_write(fd, data)
        if not state["wrote"]:
            state["wrote"] = True
            return real_write(fd, bytes(data[: len(data) // 2]))
        armed.pop()
        state["wrote"] = False
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", write)
    return armed


@pytest.mark.parametrize("at_start", [False, True], ids=["later-append", "first-append"])
def test_a_failed_write_drops_the_running_hash(
    root: Path, digest_spy: DigestSpy, half_write: list[int], at_start: bool
) -> None:
    """Half of an append reached the disk, then the write failed: the running hash is
    gone, and the digest (of the half-written file, and of the file after the device
    resumed at its true offset) is read back from disk."""
    files = EvidenceFiles(root)
    held = b"" if at_start else append_all(files, CHUNKS[:2], with_hash=True)
    chunk = os.urandom(10_000)
    half_write.append(1)
    with pytest.raises(EnvironmentFault):
        files.append(JTI, CLIP, len(held), chunk, CAP, hashlib.sha256(chunk))
    assert half_write == []  # the failure happened
    path = files.staging_path(JTI, CLIP)
    on_disk = path.read_bytes()
    assert on_disk == held + chunk[:5000]
    assert (JTI, CLIP) not in files._running
    assert files.staged_digest(JTI, CLIP, len(on_disk)) == sha(on_disk)
    assert digest_spy.paths == [path]
    # the device asks for the offset and sends the rest
    resumed = files.append(JTI, CLIP, files.offset(JTI, CLIP), chunk[5000:], CAP,
                           hashlib.sha256(chunk[5000:]))
    assert resumed == len(held + chunk)
    assert files.staged_digest(JTI, CLIP, resumed) == sha(held + chunk)
    assert digest_spy.paths == [path, path]


def test_refused_appends_write_nothing_and_keep_the_running_hash(
    root: Path, no_read_back: None
) -> None:
    """A wrong offset (behind or ahead) raises `WrongOffset` with the true offset; an
    append past the token's cap (summed over its clips) raises `TooLarge`. The file is
    untouched and the running hash still answers for it."""
    files = EvidenceFiles(root)
    held = append_all(files, CHUNKS[:3])
    for wrong in (0, len(held) - 1, len(held) + 1):
        with pytest.raises(WrongOffset) as info:
            files.append(JTI, CLIP, wrong, b"stale", CAP)
        assert info.value.offset == len(held)
        assert info.value.code == "wrong_offset"
    cap = len(held) + 100
    files.append(JTI, "clip-0002", 0, b"x" * 60, cap)
    with pytest.raises(TooLarge) as too_large:
        files.append(JTI, CLIP, len(held), b"y" * 41, cap)
    assert too_large.value.code == "token_size_cap"
    files.append(JTI, CLIP, len(held), b"y" * 40, cap)  # exactly the cap is allowed
    path = files.staging_path(JTI, CLIP)
    assert path.read_bytes() == held + b"y" * 40
    assert files.staged_digest(JTI, CLIP, len(held) + 40) == sha(held + b"y" * 40)
    assert files.staged_digest(JTI, "clip-0002", 60) == sha(b"x" * 60)


def test_discard_staging_forgets_the_running_hashes(root: Path,
                                                    digest_spy: DigestSpy) -> None:
    """After `discard_staging` no running hash of that token answers, even for a staging
    file of the same name and size that appears again; another token's stay."""
    files = EvidenceFiles(root)
    first = append_all(files, CHUNKS[:3])
    append_all(files, (b"second clip",), clip="clip-0002")
    kept = append_all(files, CHUNKS[:2], jti=OTHER_JTI)
    assert sorted(files.discard_staging(JTI)) == [CLIP, "clip-0002"]
    assert not files.staging_dir(JTI).exists()
    path = files.staging_path(JTI, CLIP)
    path.parent.mkdir(parents=True)
    impostor = os.urandom(len(first))
    path.write_bytes(impostor)  # same size as the forgotten running hash covered
    assert files.staged_digest(JTI, CLIP, len(first)) == sha(impostor)
    assert digest_spy.paths == [path]
    assert files.staged_digest(OTHER_JTI, CLIP, len(kept)) == sha(kept)
    assert digest_spy.paths == [path]  # the other token's running hash answered


def test_no_append_while_an_acceptance_is_under_way_or_after_it(root: Path) -> None:
    """`close` stops appends to the token's files (they are about to share their inodes
    with the stored copies), a failed attempt's `reopen` lets them resume, and a
    successful one's `finish_accepted` stops them for good; another token is untouched."""
    files = EvidenceFiles(root)
    data = CHUNKS[0]
    files.append(JTI, CLIP, 0, data, CAP)
    files.append(OTHER_JTI, CLIP, 0, data, CAP)

    files.close(JTI)
    files.close(JTI)  # two attempts at once: one failing must not reopen the other's
    with pytest.raises(Conflict) as refused:
        files.append(JTI, CLIP, len(data), b"late", CAP)
    assert refused.value.code == "closed"
    assert files.append(OTHER_JTI, CLIP, len(data), b"other", CAP) == len(data) + 5
    files.reopen(JTI)
    with pytest.raises(Conflict):
        files.append(JTI, CLIP, len(data), b"late", CAP)
    files.reopen(JTI)
    assert files.append(JTI, CLIP, len(data), b"more", CAP) == len(data) + 4  # positive

    whole = data + b"more"
    files.close(JTI)
    [stored] = files.link_all([(files.staging_path(JTI, CLIP), sha(whole))])
    assert stored.read_bytes() == whole
    assert files.staging_path(JTI, CLIP).exists()  # kept until the acceptance commits
    files.finish_accepted(JTI, [stored])
    assert not files.staging_dir(JTI).exists()
    assert stored.stat().st_mode & 0o777 == 0o440
    with pytest.raises(Conflict):
        files.append(JTI, CLIP, 0, b"late", CAP)
    assert not files.staging_dir(JTI).exists()
    assert stored.read_bytes() == whole


def test_linking_twice_keeps_the_stored_file(root: Path) -> None:
    """A retried acceptance (the first one's store commit failed after the links) finds
    the addresses there and reuses them: same inode, same bytes."""
    files = EvidenceFiles(root)
    files.append(JTI, CLIP, 0, CHUNKS[2], CAP)
    pair = [(files.staging_path(JTI, CLIP), sha(CHUNKS[2]))]
    [first] = files.link_all(pair)
    [again] = files.link_all(pair)
    assert first == again
    assert first.read_bytes() == CHUNKS[2]
    assert os.stat(first).st_ino == os.stat(files.staging_path(JTI, CLIP)).st_ino
