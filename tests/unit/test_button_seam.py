"""The button seam: the simulated button and the lazy GPIO factory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from device.button import make_button
from device.button.errors import ButtonError
from device.button.sim import SimButton
from device.clock import ManualClock
from device.config import ButtonSettings

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def test_sim_button_delivers_presses_only_between_start_and_stop() -> None:
    button = make_button(ButtonSettings(kind="sim"), ManualClock(NOW))
    assert isinstance(button, SimButton)
    seen: list[datetime] = []
    assert button.press() is False  # not started: ignored, not queued for later
    button.start(seen.append)
    assert button.press() is True
    assert button.press(datetime(2026, 5, 4, 9, 0, 8, tzinfo=UTC)) is True
    button.stop()
    assert button.press() is False
    assert seen == [NOW, datetime(2026, 5, 4, 9, 0, 8, tzinfo=UTC)]


def test_gpio_is_imported_only_when_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # monkeypatch puts the module back afterwards: a test that imported GpioButton before
    # this one must still get that class from the factory.
    monkeypatch.delitem(sys.modules, "device.button.gpio", raising=False)
    make_button(ButtonSettings(kind="sim"), ManualClock(NOW))
    assert "device.button.gpio" not in sys.modules
    outcome: object
    try:
        outcome = make_button(ButtonSettings(kind="gpio"), ManualClock(NOW))
    except ButtonError as exc:  # no GPIO on this machine: the error says what to do
        outcome = exc
    if isinstance(outcome, ButtonError):
        assert "gpiozero" in str(outcome)
    else:
        assert type(outcome).__module__ == "device.button.gpio"
