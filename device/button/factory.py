"""`make_button`: build the configured button, importing GPIO support only when selected."""

from __future__ import annotations

from device.button.base import Button
from device.clock import Clock
from device.config import ButtonSettings


def make_button(settings: ButtonSettings, clock: Clock) -> Button:
    """The button named by `settings.kind`.

    Raises ButtonError when `gpio` is selected on a machine without gpiozero.
    """
    if settings.kind == "sim":
        from device.button.sim import SimButton

        return SimButton(clock)
    from device.button.gpio import GpioButton

    return GpioButton(settings, clock)
