"""`SimButton`: a doorbell pressed in software.

Two things press it: the simulated camera's scene script (the visitor rings at 8 s),
and `doorbell-agent ring`, which reaches the running agent over its control socket
(device.button.control). Both go through `press`, and from there through the same
`on_press` callback a GPIO button would call.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from device.button.base import PressHandler
from device.clock import Clock

log = logging.getLogger(__name__)


class SimButton:
    """A button with a `press` method. Presses before `start` or after `stop` are ignored."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._handler: PressHandler | None = None

    def start(self, on_press: PressHandler) -> None:
        with self._lock:
            self._handler = on_press

    def stop(self) -> None:
        with self._lock:
            self._handler = None

    def press(self, at: datetime | None = None) -> bool:
        """Press the button (at `at`, default the clock's now). False when not started."""
        with self._lock:
            handler = self._handler
        if handler is None:
            log.info("simulated button pressed while the button is stopped; ignored")
            return False
        handler(at if at is not None else self._clock.now())
        return True
