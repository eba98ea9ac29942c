"""The `Button` seam: something that calls back when the doorbell is pressed.

`start(on_press)` begins delivering presses, each with the time it was observed;
`on_press` must return quickly and never raise (the agent only queues the press).
`stop()` is idempotent. `device.button.factory.make_button` builds the configured one;
GPIO (gpiozero) is imported only when selected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from device.button.errors import ButtonError

PressHandler = Callable[[datetime], None]


class Button(Protocol):
    def start(self, on_press: PressHandler) -> None: ...

    def stop(self) -> None: ...


__all__ = ["Button", "ButtonError", "PressHandler"]
