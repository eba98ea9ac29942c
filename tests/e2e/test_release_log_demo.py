"""`make demo-release-log` runs to the end and says what it showed."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.release_log import run


def test_the_release_log_demo_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "cosigned by 3 witnesses" in out
    assert "1 for this doorbell" in out
    assert "refused, witness_quorum" in out
    assert "logged once" in out
