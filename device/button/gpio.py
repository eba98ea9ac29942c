"""`GpioButton`: the doorbell push button on a Raspberry Pi GPIO pin, through gpiozero.

Wiring (docs/raspberry-pi.md): one leg of the button to GPIO17 (header pin 11), the
other to ground (pin 9), with the SoC's internal pull-up (``button.pull_up = true``):
the pin reads high at rest and low while pressed. ``button.bounce_s`` is gpiozero's
``bounce_time``, which the lgpio factory hands to lgpio's debouncer: lgpio reports an
edge only once the level has held for that long (src/lgPthAlerts.c), so a press arrives
``bounce_s`` late and a tap shorter than ``bounce_s`` is no press. The press time given
to the agent is the report's clock time less ``bounce_s`` (when lgpio debounces).

The header's chip is found by its label (`device.button.gpiochip`), not by gpiozero
2.0.1's fixed guess of gpiochip4 on a Pi 5. A pin another process holds makes lgpio
raise ``lgpio.error("GPIO busy")`` (RPi.GPIO a RuntimeError); both become `ButtonError`.

gpiozero calls ``when_pressed`` on lgpio's one notification thread, for every pin.
The callback only reads the clock and hands the press to the agent's queue; an exception
there is logged, never raised into that thread (it would end it). gpiozero is imported
only here, when this button is built; a missing gpiozero (or a machine without a GPIO
header) raises `ButtonError` saying what to do.

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
import sys
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from device.button.base import ButtonError, PressHandler
from device.button.gpiochip import describe, header_chip, read_chip_labels
from device.clock import Clock
from device.config import ButtonSettings

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
    constructor when gpiozero is missing and from `start` when the pin cannot be used.
    `dev` is where the /dev/gpiochipN devices are looked for."""

    def __init__(self, settings: ButtonSettings, clock: Clock, *, dev: Path = Path("/dev")) -> None:
        self._settings = settings
        self._clock = clock
        self._dev = dev
        self._gpiozero = load_gpiozero()
        self._device: Any = None
        self._factory: Any = None  # the lgpio factory built here, closed on stop
        self._lag = timedelta(0)
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
            factory = None
            if uses_lgpio(gz, os.environ):
                lgpio = load_lgpio(os.environ)
                if lgpio is not None:
                    factory = self._lgpio_factory(lgpio)
            errors: tuple[type[BaseException], ...] = (
                *pin_errors(gz),
                ValueError,
                OSError,
                RuntimeError,
            )
            try:
                device = gz.Button(
                    s.pin, pull_up=s.pull_up, bounce_time=bounce, pin_factory=factory
                )
            except gz.BadPinFactory as exc:
                self._close_factory(factory)
                raise ButtonError(
                    f"no GPIO on this machine (gpiozero found no pin factory: {exc}); "
                    "on a Raspberry Pi install python3-lgpio"
                ) from exc
            except gz.GPIOPinInUse as exc:
                self._close_factory(factory)
                raise ButtonError(f"GPIO{s.pin} is in use by another program: {exc}") from exc
            except errors as exc:
                self._close_factory(factory)
                if "busy" in str(exc).lower():
                    raise ButtonError(
                        f"GPIO{s.pin} is in use by another program ({exc}): stop it, or "
                        "wire the button to another pin and set button.pin"
                    ) from exc
                raise ButtonError(f"cannot use GPIO{s.pin} for the button: {exc}") from exc
            used = getattr(device, "pin_factory", None)
            if bounce is not None and type(used).__name__ == "LGPIOFactory":
                self._lag = timedelta(seconds=bounce)  # lgpio reports after the debounce
            self._factory = factory
            self._on_press = on_press
            device.when_pressed = self._pressed
            self._device = device

    def _lgpio_factory(self, lgpio: ModuleType) -> Any:
        """gpiozero's LGPIOFactory on the chip that carries the header."""
        labels = read_chip_labels(lgpio, self._dev)
        chip = header_chip(labels)
        if chip is None:
            raise ButtonError(
                f"no GPIO header found ({describe(labels)}): on a Raspberry Pi, the agent's "
                "user needs the gpio group and the unit DeviceAllow=char-gpiochip"
            )
        log.info("GPIO header: gpiochip%d (%s)", chip, labels[chip])
        module = importlib.import_module("gpiozero.pins.lgpio")
        try:
            return module.LGPIOFactory(chip=chip)
        except Exception as exc:  # lgpio.error, PinUnknownPi: name the chip it tried
            raise ButtonError(
                f"cannot open gpiochip{chip} ({labels[chip]}), the GPIO header: {exc}"
            ) from exc

    def _pressed(self) -> None:
        # lgpio's notification thread: an exception here would end it for every pin.
        handler = self._on_press
        if handler is None:
            return
        try:
            at = self._clock.now() - self._lag
            self.presses += 1
            handler(at)
        except Exception:
            log.exception("doorbell press handler failed")

    def stop(self) -> None:
        """Release the pin. Idempotent, never raises."""
        with self._lock:
            device, self._device = self._device, None
            factory, self._factory = self._factory, None
            self._on_press = None
        if device is not None:
            try:
                device.close()
            except Exception as exc:
                log.warning("gpiozero close failed: %s", exc)
        self._close_factory(factory)

    @staticmethod
    def _close_factory(factory: Any) -> None:
        if factory is None:
            return
        try:
            factory.close()
        except Exception as exc:
            log.warning("gpiozero pin factory close failed: %s", exc)


def pin_errors(gpiozero: ModuleType) -> tuple[type[BaseException], ...]:
    """gpiozero's own errors, and lgpio's when it is loaded (a pin claim that fails,
    "GPIO busy", raises lgpio.error straight through gpiozero)."""
    errors: list[type[BaseException]] = [gpiozero.GPIOZeroError]
    lgpio = sys.modules.get("lgpio")
    error = getattr(lgpio, "error", None)
    if isinstance(error, type) and issubclass(error, BaseException):
        errors.append(error)
    return tuple(errors)
