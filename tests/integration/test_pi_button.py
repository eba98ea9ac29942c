"""GpioButton against the gpiozero and lgpio stand-ins, and against the real gpiozero.

The stand-ins (tests/standins/README.md) keep gpiozero 2.0.1's names, signatures and
default pin factory (lgpio's, which opens gpiochip4 on any Pi 5), and lgpio's timing:
an edge is reported once the level has been stable for the debounce time, at the edge's
time plus that time, on lgpio's one notification thread; a pin another process holds
raises lgpio.error("GPIO busy"). `RIG.edges(pin, levels)` plays a finger on the button.
tests/standins is on sys.path only while these tests run.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.button.base import ButtonError
from device.button.factory import make_button
from device.button.gpio import GpioButton
from device.button.gpiochip import header_chip
from device.clock import ManualClock
from device.config import ButtonSettings

STANDINS = Path(__file__).resolve().parents[1] / "standins"
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


def purge_standins() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("picamera2", "gpiozero", "lgpio"):
            del sys.modules[name]


@dataclass
class Header:
    """The stand-in's rig and a /dev with its chips, for GpioButton(dev=...)."""

    rig: Any
    dev: Path

    def chips(self, chips: dict[int, str], revision: int) -> None:
        for old in self.dev.glob("gpiochip*"):
            old.unlink()
        for number in chips:
            (self.dev / f"gpiochip{number}").touch()
        self.rig.chips = dict(chips)
        self.rig.revision = revision

    def button(self, clock: ManualClock | None = None, **settings: Any) -> GpioButton:
        return GpioButton(
            ButtonSettings(kind="gpio", **settings), clock or ManualClock(T0), dev=self.dev
        )


@pytest.fixture
def gpio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Header]:
    """The stand-ins, with tests/standins on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(STANDINS))
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    purge_standins()
    from gpiozero._standin import PI4_CHIPS, PI4_REVISION, RIG

    header = Header(RIG, tmp_path / "dev")
    header.dev.mkdir()
    header.chips(PI4_CHIPS, PI4_REVISION)
    yield header
    purge_standins()


def test_a_press_reaches_the_agent_from_lgpios_notification_thread(gpio: Header) -> None:
    clock = ManualClock(T0)
    button = gpio.button(clock, pin=17, pull_up=True, bounce_s=0.05)
    seen: list[tuple[datetime, str]] = []
    button.start(lambda at: seen.append((at, threading.current_thread().name)))
    gpio.rig.on_report = lambda at: clock.set(T0 + timedelta(seconds=at))
    assert gpio.rig.press(17)
    button.stop()
    assert seen == [(T0, "lgpio-notify")]
    assert gpio.rig.calls == [
        "LGPIOFactory(chip=0)",
        "Button(17, pull_up=True, bounce_time=0.05)",
        "when_pressed = callback",
        "close()",
    ]
    assert gpio.rig.pins == {}  # the pin was released


def test_a_press_is_timed_when_the_contact_closed_not_when_lgpio_reported_it(
    gpio: Header,
) -> None:
    # lgpio reports the edge bounce_s after it happened (once stable): the button takes
    # the debounce time back off, so a press is sealed with the moment it was made.
    clock = ManualClock(T0)
    button = gpio.button(clock, bounce_s=0.05)
    seen: list[datetime] = []
    button.start(seen.append)
    gpio.rig.on_report = lambda at: clock.set(T0 + timedelta(seconds=at))
    reported = gpio.rig.edges(17, [(1.0, 0), (1.003, 1), (1.006, 0), (1.4, 1)])
    button.stop()
    assert reported == [pytest.approx(1.056)]  # the last bounce + 50 ms
    assert seen == [T0 + timedelta(seconds=1.006)]


def test_a_tap_shorter_than_the_debounce_time_is_no_press(gpio: Header) -> None:
    button = gpio.button(bounce_s=0.05)
    seen: list[datetime] = []
    button.start(seen.append)
    assert not gpio.rig.press(17, hold_s=0.03)
    assert gpio.rig.press(17, hold_s=0.08)
    button.stop()
    assert len(seen) == 1


def test_zero_bounce_means_no_debouncing_and_no_correction(gpio: Header) -> None:
    clock = ManualClock(T0)
    button = gpio.button(clock, bounce_s=0)
    seen: list[datetime] = []
    button.start(seen.append)
    gpio.rig.on_report = lambda at: clock.set(T0 + timedelta(seconds=at))
    assert gpio.rig.press(17, hold_s=0.001)
    button.stop()
    assert "Button(17, pull_up=True, bounce_time=None)" in gpio.rig.calls
    assert seen == [T0]


def test_a_failing_handler_never_ends_lgpios_notification_thread(gpio: Header) -> None:
    # An exception on lgpio's thread would end it: no edge of any pin is reported again.
    button = gpio.button()
    calls: list[datetime] = []

    def broken(at: datetime) -> None:
        calls.append(at)
        raise RuntimeError("queue gone")

    button.start(broken)
    assert gpio.rig.press(17)
    assert gpio.rig.press(17)
    button.stop()
    assert len(calls) == 2
    assert gpio.rig._notify.dead is None


def test_a_pin_in_use_in_this_process_is_named(gpio: Header) -> None:
    first = gpio.button(pin=27)
    first.start(lambda at: None)
    second = gpio.button(pin=27)
    with pytest.raises(ButtonError, match="GPIO27 is in use"):
        second.start(lambda at: None)
    first.stop()
    first.stop()  # idempotent


def test_a_pin_held_by_another_process_is_a_button_error(gpio: Header) -> None:
    # lgpio's claim raises lgpio.error("GPIO busy"), which gpiozero lets through.
    gpio.rig.held_elsewhere.add(17)
    button = gpio.button(pin=17)
    with pytest.raises(ButtonError, match=r"GPIO17 is in use by another program \(GPIO busy\)"):
        button.start(lambda at: None)


def test_rpi_gpios_runtime_error_is_a_button_error(
    gpio: Header, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RPi.GPIO reports a pin it cannot set up with a bare RuntimeError.
    import gpiozero

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Failed to add edge detection")

    monkeypatch.setattr(gpiozero, "Button", refuse)
    with pytest.raises(ButtonError, match="cannot use GPIO17 for the button"):
        gpio.button().start(lambda at: None)


def test_no_gpio_header_is_named(gpio: Header) -> None:
    gpio.chips({}, gpio.rig.revision)
    with pytest.raises(ButtonError, match=r"no GPIO header found \(no /dev/gpiochip\*\)"):
        gpio.button().start(lambda at: None)


def test_a_pi5_on_kernel_6_6_45_or_later_uses_gpiochip0(gpio: Header) -> None:
    # gpiozero 2.0.1 alone opens gpiochip4 on a Pi 5: not the header from 6.6.45 on.
    from gpiozero._standin import PI5_CHIPS, PI5_REVISION

    gpio.chips(PI5_CHIPS, PI5_REVISION)
    button = gpio.button(bounce_s=0)
    seen: list[datetime] = []
    button.start(seen.append)
    assert gpio.rig.press(17)
    button.stop()
    assert seen == [T0]
    assert gpio.rig.calls[0] == "LGPIOFactory(chip=0)"


def test_a_pi5_on_an_older_kernel_uses_gpiochip4(gpio: Header) -> None:
    from gpiozero._standin import PI5_CHIPS_BEFORE_6_6_45, PI5_REVISION

    gpio.chips(PI5_CHIPS_BEFORE_6_6_45, PI5_REVISION)
    button = gpio.button()
    button.start(lambda at: None)
    button.stop()
    assert gpio.rig.calls[0] == "LGPIOFactory(chip=4)"


@pytest.mark.parametrize(
    ("labels", "chip"),
    [
        ({0: "pinctrl-bcm2711", 1: "raspberrypi-exp-gpio"}, 0),
        ({0: "gpio-brcmstb@107d508500", 4: "pinctrl-rp1"}, 4),
        ({0: "pinctrl-rp1", 10: "gpio-brcmstb@107d508500"}, 0),
        ({0: "pinctrl-bcm2835", 1: "raspberrypi-exp-gpio"}, 0),
        ({0: "cannot open: GPIO busy"}, None),
        ({}, None),
    ],
)
def test_the_header_chip_is_found_by_its_label(labels: dict[int, str], chip: int | None) -> None:
    assert header_chip(labels) == chip


def test_make_button_builds_a_gpio_button(gpio: Header) -> None:
    assert isinstance(make_button(ButtonSettings(kind="gpio"), ManualClock(T0)), GpioButton)


def test_missing_gpiozero_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    purge_standins()
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # import gpiozero -> ImportError
    with pytest.raises(ButtonError) as info:
        make_button(ButtonSettings(kind="gpio"), ManualClock(T0))
    assert "sudo apt install python3-gpiozero" in str(info.value)
    assert "--system-site-packages" in str(info.value)


@pytest.fixture
def real_gpiozero(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real gpiozero (a dev dependency) on its MockFactory, its documented test pins."""
    purge_standins()
    gpiozero = importlib.import_module("gpiozero")
    mock = importlib.import_module("gpiozero.pins.mock")
    factory = mock.MockFactory()
    monkeypatch.setattr(gpiozero.Device, "pin_factory", factory)
    yield factory
    factory.reset()
    purge_standins()


def test_the_real_gpiozero_delivers_a_press(real_gpiozero: Any) -> None:
    clock = ManualClock(T0)
    button = make_button(ButtonSettings(kind="gpio", pin=17, bounce_s=0.05), clock)
    seen: list[datetime] = []
    button.start(seen.append)
    pin = real_gpiozero.pin(17)
    assert pin.pull == "up"  # the internal pull-up: no resistor needed
    pin.drive_low()  # the button closes the pin to ground
    pin.drive_high()
    assert seen == [T0]
    button.stop()
    pin.drive_low()  # after stop, nothing is delivered
    assert seen == [T0]


def test_the_real_gpiozero_refuses_a_pin_in_use(real_gpiozero: Any) -> None:
    gpiozero = importlib.import_module("gpiozero")
    holder = gpiozero.Button(22)
    try:
        button = make_button(ButtonSettings(kind="gpio", pin=22), ManualClock(T0))
        with pytest.raises(ButtonError, match="GPIO22 is in use"):
            button.start(lambda at: None)
    finally:
        holder.close()
