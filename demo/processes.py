"""Starts the demonstration's long-running processes and always stops them again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType


class Supervisor:
    """Owns child processes; stops every one on exit, on Ctrl-C and on SIGTERM.

    Each child runs in its own process group with its output in ``logs/NAME.log``.
    """

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._previous_term: Callable[[int, FrameType | None], object] | int | None = None

    def __enter__(self) -> Supervisor:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._previous_term = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        signal.signal(signal.SIGTERM, self._previous_term or signal.SIG_DFL)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    def start(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a child. Raises RuntimeError when one of that name is still running."""
        if name in self._children and self._children[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        log = self.log_path(name).open("ab")
        try:
            child = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            log.close()
        self._children[name] = child
        return child

    def check_alive(self, name: str) -> None:
        """Raises RuntimeError naming the child and the end of its log when it has exited."""
        child = self._children[name]
        code = child.poll()
        if code is not None:
            raise RuntimeError(f"{name} exited with {code}: {self.tail(name)}")

    def tail(self, name: str, lines: int = 8) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        child = self._children.pop(name, None)
        if child is None:
            return None
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        return child.returncode

    def kill(self, name: str) -> None:
        """SIGKILL a running child's whole process group and reap it (a crash, not a stop);
        it can then be started again under the same name."""
        child = self._children.get(name)
        if child is None or child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self._children)):
            self.stop(name)
