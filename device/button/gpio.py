"""`GpioButton`: the doorbell push button on a Raspberry Pi GPIO pin, through gpiozero.

Wiring (docs/raspberry-pi.md): one leg of the button to GPIO17 (header pin 11), the
other to ground (pin 9), with the SoC's internal pull-up (``button.pull_up = true``):
the pin reads high at rest and low while pressed. ``button.bounce_s`` is gpiozero's
``bounce_time``: edges closer together than that are contact bounce, not presses.

gpiozero calls ``when_pressed`` on its own thread. The callback only reads the clock
and hands the press to the agent's queue; an exception there is logged, never raised
into gpiozero. gpiozero is imported only here, when this button is built; a missing
gpiozero (or a machine without a GPIO header) raises `ButtonError` saying what to do.

lgpio (gpiozero's pin factory on every Pi that runs Raspberry Pi OS Bookworm) creates a
notification pipe ``.lgd-nfy*`` in ``$LG_WD``, or else in the working directory, when it
is imported. gpiozero swallows that failure and falls back to factories that need
/dev/gpiomem, so the button imports lgpio itself first and names the cause: the agent
needs a working directory it can write (the unit sets ``WorkingDirectory`` and ``LG_WD``,
docs/raspberry-pi.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from device.button.base import ButtonError, PressHandler
from device.config import ButtonSettings
from device.release.clock import Clock

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "gpiozero is not importable. On Raspberry Pi OS install it with "
    "`sudo apt install python3-gpiozero python3-lgpio` and run the agent from a venv "
    "created with `python3 -m venv --system-site-packages` "
    "(deploy/raspberry-pi/install.sh does both)"
)


def uses_lgpio(gpiozero: ModuleType, env: Mapping[str, str]) -> bool:
    """True when gpiozero will build its default pin factory and try lgpio first: no
    factory set in this process and GPIOZERO_PIN_FACTORY unset or ``lgpio``."""
    if getattr(gpiozero.Device, "pin_factory", None) is not None:
        return False
    return env.get("GPIOZERO_PIN_FACTORY", "lgpio").strip().lower() in ("", "lgpio")


def load_lgpio(env: Mapping[str, str]) -> ModuleType | None:
    """lgpio, imported here so that its import-time failure is named; None when it is
    not installed. Raises ButtonError when lgpio cannot create its notification pipe."""
    if importlib.util.find_spec("lgpio") is None:
        return None
    try:
        return importlib.import_module("lgpio")
    except ImportError:
        return None  # a broken install: gpiozero's own fallback message says more
    except Exception as exc:
        where = env.get("LG_WD") or os.getcwd()
        raise ButtonError(
            f"lgpio cannot create its notification pipe in {where} ({exc}): run the agent "
            "with a working directory it can write and LG_WD set to it (the systemd unit "
            "sets WorkingDirectory= and LG_WD to /run/doorbell; see docs/raspberry-pi.md)"
        ) from exc


def load_gpiozero() -> ModuleType:
    """The gpiozero module. Raises ButtonError with the install instructions."""
    try:
        return importlib.import_module("gpiozero")
    except ImportError as exc:
        raise ButtonError(f"{INSTALL_HINT} ({exc})") from exc


class GpioButton:
    """A push button on `settings.pin` (BCM numbering). Raises ButtonError from the
    constructor when gpiozero is missing and from `start` when the pin cannot be used."""

    def __init__(self, settings: ButtonSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._gpiozero = load_gpiozero()
        self._device: Any = None
        self._on_press: PressHandler | None = None
        self._lock = threading.Lock()
        self.presses = 0

    def start(self, on_press: PressHandler) -> None:
        """Claim the pin and deliver each press to `on_press` with the time it was seen."""
        with self._lock:
            if self._device is not None:
                return
            s = self._settings
            gz = self._gpiozero
            bounce = s.bounce_s if s.bounce_s > 0 else None
            if uses_lgpio(gz, os.environ):
                load_lgpio(os.environ)
            try:
                device = gz.Button(s.pin, pull_up=s.pull_up, bounce_time=bounce)
            except gz.BadPinFactory as exc:
                raise ButtonError(
                    f"no GPIO on this machine (gpiozero found no pin factory: {exc}); "
                    "on a Pi 5 install python3-lgpio"
                ) from exc
            except gz.GPIOPinInUse as exc:
                raise ButtonError(f"GPIO{s.pin} is in use by another program: {exc}") from exc
            except (gz.GPIOZeroError, ValueError, OSError) as exc:
                raise ButtonError(f"cannot use GPIO{s.pin} for the button: {exc}") from exc
            self._on_press = on_press
            device.when_pressed = self._pressed
            self._device = device

    def _pressed(self) -> None:
        # gpiozero's thread: never raise into it.
        handler = self._on_press
        if handler is None:
            return
        try:
            at = self._clock.now()
            self.presses += 1
            handler(at)
        except Exception:
            log.exception("doorbell press handler failed")

    def stop(self) -> None:
        """Release the pin. Idempotent, never raises."""
        with self._lock:
            device, self._device = self._device, None
            self._on_press = None
        if device is None:
            return
        try:
            device.close()
        except Exception as exc:
            log.warning("gpiozero close failed: %s", exc)
