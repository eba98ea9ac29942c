"""GpioButton against the gpiozero stand-in (tests/standins/gpiozero).

The stand-in keeps gpiozero's names and signatures, calls `when_pressed` on a thread of
its own and debounces edges closer than `bounce_time`; `RIG.press(pin)` plays a finger
on the button. tests/standins is on sys.path only while these tests run.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.button.base import ButtonError, make_button
from device.config import ButtonSettings
from device.release.clock import ManualClock

STANDINS = Path(__file__).resolve().parents[1] / "standins"
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


def purge_standins() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("picamera2", "gpiozero"):
            del sys.modules[name]


@pytest.fixture
def gpio(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in's rig, with tests/standins on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(STANDINS))
    purge_standins()
    from gpiozero._standin import RIG

    RIG.reset()
    yield RIG
    purge_standins()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_a_press_reaches_the_agent_with_the_clock_time_from_gpiozero_thread(gpio: Any) -> None:
    clock = ManualClock(T0)
    button = make_button(ButtonSettings(kind="gpio", pin=17, pull_up=True, bounce_s=0.05), clock)
    seen: list[tuple[datetime, str]] = []
    button.start(lambda at: seen.append((at, threading.current_thread().name)))
    clock.advance(timedelta(seconds=3))
    assert gpio.press(17)
    button.stop()
    assert seen == [(T0 + timedelta(seconds=3), "standin-gpio-edge")]
    assert gpio.calls == [
        "Button(17, pull_up=True, bounce_time=0.05)",
        "when_pressed = callback",
        "close()",
    ]
    assert gpio.pins == {}  # the pin was released


def test_contact_bounce_is_one_press(gpio: Any) -> None:
    mono = FakeMonotonic()
    gpio.monotonic = mono
    button = make_button(ButtonSettings(kind="gpio", bounce_s=0.05), ManualClock(T0))
    seen: list[datetime] = []
    button.start(seen.append)
    assert gpio.press(17)
    mono.now += 0.01
    assert not gpio.press(17)  # bounce
    mono.now += 0.5
    assert gpio.press(17)  # a second, real press
    button.stop()
    assert len(seen) == 2


def test_zero_bounce_means_no_debouncing(gpio: Any) -> None:
    button = make_button(ButtonSettings(kind="gpio", bounce_s=0), ManualClock(T0))
    button.start(lambda at: None)
    button.stop()
    assert gpio.calls[0] == "Button(17, pull_up=True, bounce_time=None)"


def test_a_failing_handler_never_raises_into_gpiozero(gpio: Any) -> None:
    button = make_button(ButtonSettings(kind="gpio"), ManualClock(T0))

    def broken(at: datetime) -> None:
        raise RuntimeError("queue gone")

    button.start(broken)
    assert gpio.press(17)  # the handler thread finished without an exception escaping
    button.stop()


def test_a_pin_in_use_is_named(gpio: Any) -> None:
    first = make_button(ButtonSettings(kind="gpio", pin=27), ManualClock(T0))
    first.start(lambda at: None)
    second = make_button(ButtonSettings(kind="gpio", pin=27), ManualClock(T0))
    with pytest.raises(ButtonError, match="GPIO27 is in use"):
        second.start(lambda at: None)
    first.stop()
    first.stop()  # idempotent


def test_no_gpio_header_is_named(gpio: Any) -> None:
    gpio.no_pin_factory = True
    button = make_button(ButtonSettings(kind="gpio"), ManualClock(T0))
    with pytest.raises(ButtonError, match="no GPIO on this machine"):
        button.start(lambda at: None)


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
