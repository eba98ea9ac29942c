"""The `Button` seam: something that calls back when the doorbell is pressed.

`start(on_press)` begins delivering presses, each with the time it was observed;
`on_press` must return quickly and never raise (the agent only queues the press).
`stop()` is idempotent. GPIO (gpiozero) is imported only when selected.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from device.button.errors import ButtonError
from device.config import ButtonSettings
from device.release.clock import Clock

PressHandler = Callable[[datetime], None]


class Button(Protocol):
    def start(self, on_press: PressHandler) -> None: ...

    def stop(self) -> None: ...


def make_button(settings: ButtonSettings, clock: Clock) -> Button:
    """The button named by `settings.kind`.

    Raises ButtonError when `gpio` is selected on a machine without gpiozero.
    """
    if settings.kind == "sim":
        from device.button.sim import SimButton

        return SimButton(clock)
    # Only when selected, like the simulator. gpio.py loads gpiozero itself when the
    # button is built (`load_gpiozero` raises ButtonError without it); this guard turns
    # a module that cannot be imported at all into the same ButtonError.
    try:
        module = importlib.import_module("device.button.gpio")
    except ImportError as exc:
        raise ButtonError(f"button.kind = 'gpio' needs gpiozero on a Raspberry Pi: {exc}") from exc
    button: Button = module.GpioButton(settings, clock)
    return button

__all__ = ["Button", "ButtonError", "PressHandler", "make_button"]
