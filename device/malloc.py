"""`tune_malloc`: glibc's allocator settings for a long-running video daemon, and
`limit_blas_threads`: no idle OpenBLAS workers beside it.

Standard library only (ctypes), so the command line calls them first, before it
imports the agent (and with it NumPy).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import MutableMapping

M_TRIM_THRESHOLD = -1  # glibc <malloc.h> mallopt parameters
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, made fixed
TRIM_THRESHOLD = 1024 * 1024


def tune_malloc() -> bool:
    """Keep a long-running video daemon's heap from ratcheting up (glibc only).

    Every frame allocates and frees buffers of a megabyte or more (raw frames for the
    encoder). glibc's dynamic mmap threshold moves such blocks onto the heap after the
    first free, where long-lived small objects (packets in the pre-roll ring, index
    rows) pin them and the heap only grows: measured +25 MiB over ten minutes at 720p.
    A fixed threshold keeps big blocks in their own mappings, returned on free; a
    bounded number of arenas stops helper threads from each holding their own.
    Returns False where libc has no `mallopt` (musl) or refuses; the agent works anyway.
    """
    try:  # the C library the interpreter already runs on: no `ldconfig -p` child process
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    results = [
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        mallopt(M_ARENA_MAX, MALLOC_ARENAS),
    ]
    return all(results)


def limit_blas_threads(environ: MutableMapping[str, str] = os.environ) -> None:
    """Ask OpenBLAS for one thread, unless the environment already chose; call it before
    NumPy is imported (OpenBLAS reads the variable when it loads).

    The agent makes no BLAS call (device/imaging.py gathers instead of multiplying
    matrices), yet OpenBLAS starts a worker per extra core when NumPy loads, three on a
    Raspberry Pi Zero 2 W, each with its stack and buffers
    (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
    """
    environ.setdefault("OPENBLAS_NUM_THREADS", "1")
