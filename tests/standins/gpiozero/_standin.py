"""The test's handle on the stand-in GPIO header: chips, pins, presses, the call log.

Not part of gpiozero's API: only tests import it. Behaviour and its upstream source:

- edges reach `when_pressed` on one notification thread for all pins, as lgpio's
  `_callback_thread` (lgpio.py, lgpio 0.2.2.0) calls every callback;
- debouncing is lgpio's (src/lgPthAlerts.c, lgpio 0.2.2.0): with both edges watched, an
  edge is reported only once the level has been stable for the debounce time, at the
  edge's time plus the debounce time, and only when the level differs from the last
  one reported; a tap shorter than the debounce time is never reported;
- a pin claimed by another process raises `lgpio.error("GPIO busy")` from the claim;
- the chips are /dev/gpiochipN with the kernel's labels (Pi 4: `pinctrl-bcm2711` on
  gpiochip0; Pi 5 before kernel 6.6.45: `pinctrl-rp1` on gpiochip4, after: on gpiochip0).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

PI4_REVISION = 0xC03114
PI5_REVISION = 0xD04170
PI4_CHIPS = {0: "pinctrl-bcm2711", 1: "raspberrypi-exp-gpio"}
PI5_CHIPS_BEFORE_6_6_45 = {
    0: "gpio-brcmstb@107d508500",
    1: "gpio-brcmstb@107d508540",
    2: "gpio-brcmstb@107d517c00",
    3: "gpio-brcmstb@107d517c20",
    4: "pinctrl-rp1",
}
PI5_CHIPS = {
    0: "pinctrl-rp1",
    10: "gpio-brcmstb@107d508500",
    11: "gpio-brcmstb@107d508540",
    12: "gpio-brcmstb@107d517c00",
    13: "gpio-brcmstb@107d517c20",
}


class Rig:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls: list[str] = []
            self.pins: dict[int, Any] = {}  # pin -> the device that claimed it in-process
            self.held_elsewhere: set[int] = set()  # pins another process has claimed
            self.no_pin_factory = False
            self.revision = PI4_REVISION
            self.chips: dict[int, str] = dict(PI4_CHIPS)
            self.on_report: Callable[[float], None] | None = None
        self._notify = _NotifyThread()

    def record(self, call: str) -> None:
        with self.lock:
            self.calls.append(call)

    def claim(self, pin: int, device: Any) -> None:
        import lgpio

        from gpiozero import GPIOPinInUse

        with self.lock:
            if pin in self.held_elsewhere:
                raise lgpio.error("GPIO busy")
            if pin in self.pins:
                raise GPIOPinInUse(f"pin GPIO{pin} is already in use by {self.pins[pin]!r}")
            self.pins[pin] = device

    def release(self, pin: int, device: Any) -> None:
        with self.lock:
            if self.pins.get(pin) is device:
                del self.pins[pin]

    def edges(self, pin: int, levels: Sequence[tuple[float, int]]) -> list[float]:
        """Play raw level changes `(seconds from now, level)` on `pin`, the line at rest
        high before them and stable after the last. Returns the times (same origin) at
        which lgpio reports a falling edge; each report calls the device's
        `when_pressed` on the notification thread, after `on_report(time)`. Waits for
        the handlers to finish."""
        with self.lock:
            device = self.pins.get(pin)
        bounce = 0.0 if device is None or not device.bounce_time else device.bounce_time
        reported_level = 1
        presses: list[float] = []
        for number, (at, level) in enumerate(levels):
            following = levels[number + 1][0] if number + 1 < len(levels) else None
            stable = following is None or following - at > bounce
            if not stable or level == reported_level:
                continue
            reported_level = level
            if level == 0:
                presses.append(at + bounce)
        if device is not None:
            for at in presses:
                self._notify.call(functools.partial(self._report, device, at))
            self._notify.drain()
        return presses if device is not None else []

    def press(self, pin: int, hold_s: float = 0.2) -> bool:
        """A finger on the button for `hold_s`: True when gpiozero reported a press."""
        return bool(self.edges(pin, [(0.0, 0), (hold_s, 1)]))

    def _report(self, device: Any, at: float) -> None:
        if self.on_report is not None:
            self.on_report(at)
        device._edge()


class _NotifyThread:
    """lgpio's one `_callback_thread`: every GPIO callback runs here, in order."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self.dead: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="lgpio-notify", daemon=True)
        self.thread.start()

    def call(self, job: Callable[[], None]) -> None:
        with self._idle:
            self._pending += 1
        self._jobs.put(job)

    def drain(self, timeout: float = 5.0) -> None:
        with self._idle:
            self._idle.wait_for(
                lambda: self._pending == 0 or self.dead is not None, timeout=timeout
            )

    def _run(self) -> None:
        # An exception in a callback ends lgpio's run() loop: no edge is reported again.
        while True:
            job = self._jobs.get()
            try:
                job()
            except BaseException as exc:
                with self._idle:
                    self.dead = exc
                    self._idle.notify_all()
                return
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


RIG = Rig()
