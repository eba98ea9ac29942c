"""The soak, short: three agents, one round per fault kind, every end check.

`make soak` runs the same harness longer (docs/soak.md). This short run is part of
`make test` so that a change that loses a release under a fault fails CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.runner import SoakOptions, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres]


def test_every_release_survives_one_of_each_fault(tmp_path: Path) -> None:
    report = run_soak(SoakOptions(seed=7, rounds=7, devices=3, work_dir=tmp_path / "soak"))
    print(report.summary())
    findings = report.findings
    assert findings.problems == []
    faults = report.as_dict()["faults_injected"]
    assert "none" not in faults  # seven rounds: each fault kind once
    assert findings.uploaded_once + sum(findings.refused.values()) + len(findings.waiting) >= 7
    assert findings.uploaded_once >= 5, report.summary()
    assert findings.custody_records >= findings.uploaded_once
