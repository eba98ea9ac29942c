"""The soak, short: three agents, one round per fault kind, every end check.

`make soak` runs the same harness longer (docs/soak.md). This short run is part of
`make test` so that a change that loses a release under a fault fails CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.driver import Fault
from tests.soak.runner import SoakOptions, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres]


def test_every_release_survives_one_of_each_fault(tmp_path: Path) -> None:
    report = run_soak(SoakOptions(seed=7, rounds=8, devices=3, work_dir=tmp_path / "soak"))
    print(report.summary())
    summary = report.as_dict()
    findings = report.findings
    assert findings.problems == [], report.summary()
    # eight rounds: each fault kind once (the full disk needs root, the clock step a C
    # compiler; CI has both)
    assert summary["disk_full_fault"] == "on"
    assert summary["clock_step_fault"] == "on"
    assert sorted(summary["faults_injected"]) == sorted(f.value for f in Fault
                                                        if f is not Fault.NONE)
    settled = findings.uploaded_once + sum(findings.refused.values()) + len(findings.waiting)
    assert settled == 8, report.summary()
    assert findings.custody_records == findings.uploaded_once
