"""`limit_blas_threads` chooses one OpenBLAS thread unless the environment chose;
`no_huge_pages` turns transparent huge pages off for the process (and its children)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device.malloc import limit_blas_threads

ROOT = Path(__file__).resolve().parents[2]


def test_one_openblas_thread_unless_the_environment_says_otherwise() -> None:
    unset: dict[str, str] = {}
    limit_blas_threads(unset)
    assert unset == {"OPENBLAS_NUM_THREADS": "1"}
    chosen = {"OPENBLAS_NUM_THREADS": "4"}
    limit_blas_threads(chosen)
    assert chosen == {"OPENBLAS_NUM_THREADS": "4"}


def _thp_enabled(script: str) -> str:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd=ROOT, timeout=60)
    return result.stdout.strip()


THP_LINE = "print(next(l for l in open('/proc/self/status') if l.startswith('THP_enabled')))"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux only")
def test_no_huge_pages_turns_them_off_for_the_process_and_its_children() -> None:
    if "THP_enabled" not in Path("/proc/self/status").read_text():
        pytest.skip("this kernel does not report THP_enabled")
    assert _thp_enabled(THP_LINE).split() == ["THP_enabled:", "1"]  # control
    script = (
        "import subprocess, sys\n"
        "from device.malloc import no_huge_pages\n"
        "assert no_huge_pages()\n"
        f"{THP_LINE}\n"
        f"subprocess.run([sys.executable, '-c', {THP_LINE!r}], check=True)\n"
    )
    assert _thp_enabled(script).split() == ["THP_enabled:", "0"] * 2
