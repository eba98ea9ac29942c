"""`tune_malloc`: glibc's allocator settings for a long-running video daemon,
`limit_blas_threads`: no idle OpenBLAS workers beside it, and `no_huge_pages`: its
anonymous memory in base pages.

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
PR_SET_THP_DISABLE = 41  # <linux/prctl.h>


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


def no_huge_pages() -> bool:
    """Keep the process's anonymous memory out of transparent huge pages (Linux).

    libx264 asks for huge pages on each of its buffers of 2 MiB or more (madvise
    MADV_HUGEPAGE; six of them, 14 MiB, at 720p on x86-64), and a kernel whose THP mode
    is `madvise` or `always` then fills each 2 MiB at a time, parts the encoder never
    touches included: 4.5-5 MiB of the sim agent's 52 MiB anonymous at 1280x720, for
    about 2 % more of the encoder's CPU (docs/adr/0019-agent-memory-and-uplink-
    benchmarks.md, "Measured"). Children inherit the setting. Returns False where prctl
    is missing or refuses (not Linux, a kernel before 3.15); the agent works anyway.
    """
    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return bool(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0)
