"""`limit_blas_threads` chooses one OpenBLAS thread unless the environment chose."""

from __future__ import annotations

from device.malloc import limit_blas_threads


def test_one_openblas_thread_unless_the_environment_says_otherwise() -> None:
    unset: dict[str, str] = {}
    limit_blas_threads(unset)
    assert unset == {"OPENBLAS_NUM_THREADS": "1"}
    chosen = {"OPENBLAS_NUM_THREADS": "4"}
    limit_blas_threads(chosen)
    assert chosen == {"OPENBLAS_NUM_THREADS": "4"}
