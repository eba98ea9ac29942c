"""The log's store on real files (torn tails cut, losses and forks refused) and the
witness's pure add-checkpoint judgement (every status code of c2sp.org/tlog-witness)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.merkle import EMPTY_ROOT, MemoryTree, consistency_proof, leaf_hash
from protocol.tlog.note import SignatureType, Signer, sign_note
from release_log.cosigning import add_checkpoint_body
from release_log.store import ENTRIES, PUBLISHED, LogStore, LogStoreError
from release_log.witness_rules import Accepted, Refusal, Stored, judge
from tests.unit.tlog_world import ORIGIN, log_signer, seeded

LOG = log_signer()


def _entries(n: int) -> list[bytes]:
    return [b"entry %d" % i for i in range(n)]


def test_appends_survive_reopening_and_checkpoints_are_signed(tmp_path: Path) -> None:
    store = LogStore(tmp_path, LOG)
    indices, note = store.append(_entries(3))
    assert indices == [0, 1, 2]
    assert open_checkpoint(note, [LOG.verifier]).checkpoint.size == 3
    assert store.append([b"entry 1", b"new", b"new"])[0] == [1, 3, 3]  # retries: same index
    store.close()
    again = LogStore(tmp_path, LOG)
    assert again.size == 4
    assert again.entry(3) == b"new"
    assert again.append([b"entry 2", b"new"])[0] == [2, 3]
    expected = MemoryTree([leaf_hash(e) for e in [*_entries(3), b"new"]])
    assert again.tree.root() == expected.root()


def test_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    store = LogStore(tmp_path, LOG)
    store.append(_entries(4))
    store.close()
    path = tmp_path / ENTRIES
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:30])  # half a record after the last one
    again = LogStore(tmp_path, LOG)
    assert again.size == 4
    assert path.read_bytes() == whole


def test_a_log_that_lost_signed_entries_refuses_to_start(tmp_path: Path) -> None:
    store = LogStore(tmp_path, LOG)
    store.append(_entries(4))
    store.close()
    path = tmp_path / ENTRIES
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LogStoreError, match="lost entries"):
        LogStore(tmp_path, LOG)


def test_a_log_whose_entries_changed_refuses_to_sign_a_fork(tmp_path: Path) -> None:
    store = LogStore(tmp_path, LOG)
    store.append(_entries(4))
    store.publish(store.signed_note)
    store.close()
    other = tmp_path / "other"
    forged = LogStore(other, LOG)
    forged.append([b"x", b"y", b"z", b"w"])
    forged.close()
    (tmp_path / ENTRIES).write_bytes((other / ENTRIES).read_bytes())
    with pytest.raises(LogStoreError, match="fork"):
        LogStore(tmp_path, LOG)
    assert (tmp_path / PUBLISHED).exists()


# -- the witness's judgement --------------------------------------------------------

TREE = MemoryTree([leaf_hash(e) for e in _entries(8)])
LOGS = {ORIGIN: [LOG.verifier]}


def _note(size: int, root: bytes | None = None, signer: Signer = LOG) -> bytes:
    return sign_note(
        Checkpoint(signer.name, size, TREE.root(size) if root is None else root).text, signer
    )


def _status(body: bytes, stored: Stored | None) -> int:
    verdict = judge(body, LOGS, {} if stored is None else {ORIGIN: stored})
    return 200 if isinstance(verdict, Accepted) else verdict.status


AT_3 = Stored(3, TREE.root(3))


@pytest.mark.parametrize(
    ("body", "stored", "status"),
    [
        (add_checkpoint_body(0, [], _note(5)), None, 200),
        (add_checkpoint_body(3, consistency_proof(TREE, 3, 8), _note(8)), AT_3, 200),
        (add_checkpoint_body(3, [], _note(3)), AT_3, 200),
        (b"old 3\n" + _note(8), AT_3, 400),  # no blank line after the proof
        (b"new 3\n\n" + _note(8), AT_3, 400),
        (add_checkpoint_body(9, [], _note(8)), AT_3, 400),
        (add_checkpoint_body(0, [], b"not a note"), None, 400),
        (
            add_checkpoint_body(
                0, [], _note(5, signer=Signer("x.example/l", SignatureType.ed25519, seeded("x")))
            ),
            None,
            404,
        ),
        (
            add_checkpoint_body(
                0, [], _note(5, signer=Signer(ORIGIN, SignatureType.ed25519, seeded("y")))
            ),
            None,
            403,
        ),
        (add_checkpoint_body(0, [], _note(5)), AT_3, 409),
        (add_checkpoint_body(2, [], _note(5)), AT_3, 409),
        (add_checkpoint_body(0, [], _note(0, root=bytes(32))), None, 422),
        (add_checkpoint_body(0, [], _note(0, root=EMPTY_ROOT)), None, 200),
        (add_checkpoint_body(0, [TREE.root(1)], _note(5)), None, 422),
        (add_checkpoint_body(3, [], _note(3, root=bytes(32))), AT_3, 422),
        (add_checkpoint_body(3, consistency_proof(TREE, 2, 8), _note(8)), AT_3, 422),
    ],
)
def test_add_checkpoint_status_codes(body: bytes, stored: Stored | None, status: int) -> None:
    assert _status(body, stored) == status


def test_a_409_names_the_witness_size() -> None:
    verdict = judge(add_checkpoint_body(0, [], _note(5)), LOGS, {ORIGIN: AT_3})
    assert verdict == Refusal(409, "3\n")


FAILING_WRITE = """
import resource, signal, sys
from pathlib import Path
from release_log.store import LogStore
from tests.unit.tlog_world import log_signer

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
directory = Path(sys.argv[1])
store = LogStore(directory, log_signer())
store.append([b"first"])
size = (directory / "entries").stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200, resource.RLIM_INFINITY))
try:
    store.append([b"x" * 5000])
except OSError as exc:
    print("refused", exc.errno)
print(store.append([b"second"])[0])
"""


def test_a_failed_write_leaves_no_half_record_behind(tmp_path: Path) -> None:
    """A real write failure (the file size limit, EFBIG) in the middle of a batch: the
    half-written bytes are cut, the next append follows the last good record, and a
    reopened log holds exactly the acknowledged entries."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FAILING_WRITE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.split("\n")[:2] == ["refused 27", "[1]"]
    reopened = LogStore(tmp_path, LOG)
    assert reopened.size == 2
    assert [reopened.entry(0), reopened.entry(1)] == [b"first", b"second"]
