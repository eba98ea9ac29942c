"""Errors of the button seam and the control socket, under the agent's roots."""

from __future__ import annotations

from device.errors import EnvironmentFault


class ButtonError(EnvironmentFault):
    """The button could not be set up (GPIO library missing, pin busy)."""


class ControlError(EnvironmentFault):
    """The control socket could not be created, or the agent could not be reached."""


__all__ = ["ButtonError", "ControlError"]
