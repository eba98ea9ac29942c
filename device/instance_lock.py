"""One agent per state directory: an exclusive `flock` on ``{state_dir}/agent.lock``.

The agent takes this lock before it touches anything in its state directory (no store
recovery, no socket, no status file), so a second agent started by mistake on the same
directory stops with an error and leaves the running agent's clip alone. The kernel
drops the lock when the process exits, however it exits, so a crash leaves nothing to
clean up. Design: docs/architecture.md ("One agent per state directory").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from device.errors import ConfigError, EnvironmentFault

LOCK_FILE = "agent.lock"


class AgentAlreadyRunning(EnvironmentFault):
    """Another agent holds the state directory's lock."""


class InstanceLock:
    """The held lock; `release()` (or process exit) lets the next agent start."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def make_state_dir(state_dir: Path) -> None:
    """Create the state directory (0700). Raises ConfigError naming it and the cause."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the state directory {state_dir}: {exc.strerror or exc} "
            "(set agent.state_dir in agent.toml to a directory this user may write)"
        ) from exc


def acquire(state_dir: Path) -> InstanceLock:
    """Create the state directory if needed and take its lock without waiting.

    Raises AgentAlreadyRunning when another process holds it, ConfigError when the
    directory or the lock file cannot be created.
    """
    make_state_dir(state_dir)
    path = state_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise AgentAlreadyRunning(
            f"another agent{who} is running on {state_dir}; this one changed nothing and "
            "stops (stop the other first, or give this one its own agent.state_dir)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return InstanceLock(path, fd)


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
