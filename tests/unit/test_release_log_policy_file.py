"""The log's policy file is read again when it changes; a broken or foreign new version
leaves the last good one in force."""

from __future__ import annotations

import os
from pathlib import Path

from release_log.cosigning import PolicyFile
from tests.unit.tlog_world import log_signer, policy_text, witness_signers


def _write(path: Path, data: bytes, stamp: int) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(stamp, stamp))


def test_the_policy_file_is_reloaded_only_when_it_changes_and_parses(tmp_path: Path) -> None:
    log, witnesses = log_signer(), witness_signers()
    path = tmp_path / "policy.txt"
    _write(path, policy_text(log, witnesses, quorum=2), 1_000_000_000)
    source = PolicyFile(path, log.verifier)
    assert source.current().groups["all-witnesses"].threshold == 2
    _write(path, policy_text(log, witnesses, quorum=3), 2_000_000_000)
    assert source.current().groups["all-witnesses"].threshold == 3
    _write(path, b"quorum nobody\n", 3_000_000_000)
    assert source.current().groups["all-witnesses"].threshold == 3
    _write(path, policy_text(log_signer(seed="other"), witnesses), 4_000_000_000)
    assert source.current().groups["all-witnesses"].threshold == 3
    _write(path, policy_text(log, witnesses, quorum=1), 5_000_000_000)
    assert source.current().groups["all-witnesses"].threshold == 1
