"""CPU time by thread, for benchmarks that run the code they measure in their own
process beside threads of their own (the main thread that drives the run, an MQTT
client that listens for the result).

Each thread's time is read from its own CPU clock (`pthread_getcpuclockid`: user +
system, in nanoseconds, the same account as the process clock), so the benchmark's
threads can be taken out of the process's time exactly. A thread that ended between two
samples is no longer readable; its time stays in the process's figure and is reported
as ``(threads that ended)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

ENDED = "(threads that ended)"


def thread_cpu_s(thread: threading.Thread) -> float | None:
    """CPU seconds `thread` has used so far, or None when it is not running."""
    if thread.ident is None or not thread.is_alive():
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (OSError, ProcessLookupError):  # it ended after the check
        return None


@dataclass(frozen=True, slots=True)
class CpuSample:
    """The process's CPU seconds and each live thread's, at one instant."""

    process: float
    threads: dict[int, tuple[str, float]]  # thread ident -> (name, CPU seconds)

    @classmethod
    def take(cls) -> CpuSample:
        threads: dict[int, tuple[str, float]] = {}
        for thread in threading.enumerate():
            cpu = thread_cpu_s(thread)
            if cpu is not None and thread.ident is not None:
                threads[thread.ident] = (thread.name, cpu)
        return cls(time.process_time(), threads)


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """The process's CPU between two samples, without the threads named `own`."""

    process: float  # every thread of the process, the benchmark's own too
    own: float  # the benchmark's threads
    by_thread: dict[str, float]  # every other thread alive at both samples, and ENDED

    @property
    def measured(self) -> float:
        """The process's CPU minus the benchmark's own threads."""
        return self.process - self.own

    @classmethod
    def between(cls, before: CpuSample, after: CpuSample,
                own: Sequence[threading.Thread]) -> CpuSplit:
        """`own` must be alive at both samples (raises ValueError otherwise)."""
        own_ids = {thread.ident for thread in own}
        own_cpu = 0.0
        by_thread: dict[str, float] = {}
        for ident in own_ids:
            if ident not in before.threads or ident not in after.threads:
                raise ValueError(f"thread {ident} of the benchmark ended while measured")
            own_cpu += after.threads[ident][1] - before.threads[ident][1]
        for ident, (name, cpu) in after.threads.items():
            if ident not in own_ids:
                by_thread[name] = cpu - before.threads.get(ident, (name, 0.0))[1]
        process = after.process - before.process
        by_thread[ENDED] = process - own_cpu - sum(by_thread.values())
        return cls(process, own_cpu, by_thread)
