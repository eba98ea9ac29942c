"""Stand-in of gpiozero 2.0.1: `Device`, `Button` and the exceptions the doorbell handles.

`Button(pin=None, *, pull_up=True, active_state=None, bounce_time=None, hold_time=1,
hold_repeat=False, pin_factory=None)` as in gpiozero (gpiozero/input_devices.py);
`when_pressed` accepts a callable of zero or one argument (the device). Without a
`pin_factory` the first device builds the default one as gpiozero/devices.py
`_default_pin_factory` does: GPIOZERO_PIN_FACTORY, else lgpio first; here only the lgpio
factory exists (tests/standins/gpiozero/pins/lgpio.py). Presses are played by
`gpiozero._standin.RIG` with lgpio's debounce timing and notification thread.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable
from typing import Any

from gpiozero._standin import RIG


class GPIOZeroError(Exception):
    """Base class for all exceptions in GPIO Zero."""


class DeviceClosed(GPIOZeroError):
    """Error raised when an operation is attempted on a closed device."""


class BadEventHandler(GPIOZeroError, ValueError):
    """Error raised when an event handler with an incompatible prototype is specified."""


class BadPinFactory(GPIOZeroError, ImportError):
    """Error raised when an unknown pin factory name is specified."""


class GPIODeviceError(GPIOZeroError):
    """Base class for errors specific to the GPIODevice hierarchy."""


class GPIOPinInUse(GPIODeviceError):
    """Error raised when attempting to use a pin already in use by another device."""


class PinError(GPIOZeroError):
    """Base class for errors related to pin implementations."""


class PinInvalidPin(PinError, ValueError):
    """Error raised when an invalid pin specification is provided."""


def _pin_number(pin: Any) -> int:
    if isinstance(pin, bool):
        raise PinInvalidPin(f"{pin!r} is not a valid pin")
    if isinstance(pin, int):
        number = pin
    elif isinstance(pin, str):
        text = pin.upper()
        for prefix in ("GPIO", "BCM"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
        if not text.isdigit():
            raise PinInvalidPin(f"{pin!r} is not a valid pin name")
        number = int(text)
    else:
        raise PinInvalidPin(f"{pin!r} is not a valid pin")
    if not 0 <= number <= 27:
        raise PinInvalidPin(f"GPIO{number} is not a valid pin on a Raspberry Pi header")
    return number


def _wrap(device: Button, fn: Callable[..., Any] | None) -> Callable[[], Any] | None:
    if fn is None:
        return None
    if not callable(fn):
        raise BadEventHandler("value must be None or a callable")
    try:
        inspect.signature(fn).bind()
        return fn
    except TypeError:
        try:
            inspect.signature(fn).bind(device)
        except TypeError:
            raise BadEventHandler(
                "value must be a callable which accepts up to one mandatory parameter"
            ) from None
        return lambda: fn(device)


class Device:
    """gpiozero's device base: the process-wide pin factory, built on first use."""

    pin_factory: Any = None

    @staticmethod
    def _default_pin_factory() -> Any:
        name = os.environ.get("GPIOZERO_PIN_FACTORY")
        if RIG.no_pin_factory or name not in (None, "lgpio"):
            raise BadPinFactory("Unable to load any default pin factory!")
        from gpiozero.pins.lgpio import LGPIOFactory

        try:
            return LGPIOFactory()
        except Exception as exc:
            warnings.warn(f"Falling back from lgpio: {exc!s}", stacklevel=2)
        raise BadPinFactory("Unable to load any default pin factory!")


class Button(Device):
    """A push button between a GPIO pin and ground (pull_up=True) or 3V3 (False)."""

    def __init__(
        self,
        pin: Any = None,
        *,
        pull_up: bool | None = True,
        active_state: bool | None = None,
        bounce_time: float | None = None,
        hold_time: float = 1,
        hold_repeat: bool = False,
        pin_factory: Any = None,
    ) -> None:
        RIG.record(f"Button({pin!r}, pull_up={pull_up}, bounce_time={bounce_time})")
        if pin_factory is None:
            if Device.pin_factory is None:
                Device.pin_factory = Device._default_pin_factory()
            pin_factory = Device.pin_factory
        self.pin_factory = pin_factory
        if pin is None:
            raise GPIODeviceError("No pin given")
        number = _pin_number(pin)
        if pull_up is None and active_state is None:
            raise PinInvalidPin("active_state must be specified when pull_up is None")
        if bounce_time is not None and bounce_time < 0:
            raise ValueError("bounce_time must be 0 or greater")
        self.pin_number = number
        self.pull_up = pull_up
        self.bounce_time = bounce_time
        self.hold_time = hold_time
        self.hold_repeat = hold_repeat
        self._when_pressed: Callable[[], Any] | None = None
        self._closed = False
        pin_factory.claim(number, self)

    @property
    def when_pressed(self) -> Callable[[], Any] | None:
        return self._when_pressed

    @when_pressed.setter
    def when_pressed(self, value: Callable[..., Any] | None) -> None:
        if self._closed:
            raise DeviceClosed("Button is closed or uninitialized")
        RIG.record("when_pressed = " + ("None" if value is None else "callback"))
        self._when_pressed = _wrap(self, value)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        RIG.record("close()")
        if not self._closed:
            self._closed = True
            self._when_pressed = None
            RIG.release(self.pin_number, self)

    def _edge(self) -> None:
        """A reported falling edge, on lgpio's notification thread: gpiozero calls
        `when_pressed` right there; an exception propagates into that thread."""
        handler = self._when_pressed
        if handler is not None and not self._closed:
            handler()
