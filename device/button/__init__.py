"""The button seam: the simulated button, the GPIO button (lazy), the control socket."""

from device.button.base import Button
from device.button.factory import make_button

__all__ = ["Button", "make_button"]
