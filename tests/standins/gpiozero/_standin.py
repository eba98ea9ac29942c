"""The test's handle on the stand-in GPIO header: pins in use, presses, the call log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Rig:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.calls: list[str] = []
        self.pins: dict[int, Any] = {}
        self.no_pin_factory = False
        self.monotonic = monotonic
        self._last_edge: dict[int, float] = {}

    def record(self, call: str) -> None:
        with self.lock:
            self.calls.append(call)

    def claim(self, pin: int, device: Any) -> None:
        from gpiozero import GPIOPinInUse

        with self.lock:
            if pin in self.pins:
                raise GPIOPinInUse(f"pin GPIO{pin} is already in use by {self.pins[pin]!r}")
            self.pins[pin] = device

    def release(self, pin: int, device: Any) -> None:
        with self.lock:
            if self.pins.get(pin) is device:
                del self.pins[pin]

    def press(self, pin: int) -> bool:
        """A falling edge on `pin` (the button closes to ground). Returns True when the
        device's handler was called, False when debounced or nobody listens; waits for
        the handler thread to finish."""
        with self.lock:
            device = self.pins.get(pin)
            now = self.monotonic()
            last = self._last_edge.get(pin)
            self._last_edge[pin] = now
        if device is None:
            return False
        bounce = device.bounce_time
        if bounce and last is not None and now - last < bounce:
            return False
        thread = device._edge()
        if thread is None:
            return False
        thread.join(timeout=5)
        return True

    def reset(self) -> None:
        with self.lock:
            self.calls = []
            self.pins = {}
            self.no_pin_factory = False
            self._last_edge = {}


RIG = Rig()
