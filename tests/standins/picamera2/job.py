"""Stand-in of picamera2.job.Job (picamera2 0.3.36, picamera2/job.py): a future.

`get_result(timeout)` raises TimeoutError after `timeout` seconds and leaves the job
queued: only `Picamera2.cancel_all_and_flush()` takes it off the camera's list.
"""

from __future__ import annotations

from concurrent.futures import CancelledError, Future
from typing import Any


class Job:
    def __init__(self) -> None:
        self._future: Future[Any] = Future()

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        self._future.set_exception(CancelledError())
