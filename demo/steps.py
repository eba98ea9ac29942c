"""A tiny step runner: numbered steps, a progress display, and a failure that names its step."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


class StepFailed(Exception):
    """A demonstration step did not produce what it promised."""


@dataclass(frozen=True, slots=True)
class Step:
    title: str
    run: Callable[[], None]


class Progress:
    """Prints each step as it starts and ends, with a bar of steps done and elapsed time."""

    def __init__(self, total: int, out: TextIO = sys.stdout) -> None:
        self._total = total
        self._done = 0
        self._out = out
        self._started = time.monotonic()

    def _bar(self) -> str:
        width = 24
        filled = round(width * self._done / self._total) if self._total else width
        return "[" + "#" * filled + "." * (width - filled) + "]"

    def begin(self, number: int, title: str) -> None:
        self._out.write(f"\n{self._bar()} step {number}/{self._total}: {title}\n")
        self._out.flush()

    def section(self, title: str) -> None:
        """An unnumbered phase (the set-up before the numbered steps)."""
        self._out.write(f"\n{self._bar()} {title}\n")
        self._out.flush()

    def say(self, line: str) -> None:
        self._out.write(f"    {line}\n")
        self._out.flush()

    def end(self, number: int, seconds: float) -> None:
        self._done += 1
        self._out.write(f"    ok: step {number} done in {seconds:.1f} s\n")
        self._out.flush()

    def finish(self) -> None:
        """The full bar, once every step has passed."""
        self._out.write(f"\n{self._bar()} all {self._total} steps passed\n")
        self._out.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self._started


def run_steps(steps: list[Step], progress: Progress) -> None:
    """Run steps in order. Raises StepFailed naming the failing step."""
    for number, step in enumerate(steps, start=1):
        progress.begin(number, step.title)
        started = time.monotonic()
        try:
            step.run()
        except StepFailed as exc:
            raise StepFailed(f"step {number} ({step.title}) failed: {exc}") from exc
        except Exception as exc:  # any failure of a step is reported with its name
            raise StepFailed(
                f"step {number} ({step.title}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        progress.end(number, time.monotonic() - started)
    progress.finish()
