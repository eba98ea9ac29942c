"""The agent's `status.json`: written atomically by the agent, read by `doorbell-agent
status`.

A module of its own, with nothing but the standard library, so that reading the status
loads no video stack (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from device.errors import DoorbellError

STATUS_FILE = "status.json"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON durably: temp file in the same directory (0600), fsync, rename, fsync
    the directory. Raises OSError."""
    payload = json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_status(state_dir: Path) -> dict[str, Any]:
    """The last status the agent wrote. Raises DoorbellError when there is none."""
    path = state_dir / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DoorbellError(f"no status file at {path}: has the agent run here?") from exc
    except (OSError, ValueError) as exc:
        raise DoorbellError(f"cannot read status file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DoorbellError(f"status file {path} does not hold a JSON object")
    return data
