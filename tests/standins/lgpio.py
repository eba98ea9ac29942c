"""Stand-in of lgpio 0.2.2.0 (lgpio.py from PyPI) for in-process tests.

Only what gpiozero's LGPIOFactory and `device/button/gpio.py` touch: `error`,
`gpiochip_open`, `gpiochip_close`, `gpio_get_chip_info`. Unlike the real module it makes
no notification pipe on import (the real import-time behaviour is tested with the real
lgpio in a subprocess: tests/integration/test_pi_unit_start.py). The chips are those of
`gpiozero._standin.RIG.chips`; error texts are lgpio's (src/lgErr.c).
"""

from __future__ import annotations

from typing import Any


class error(Exception):
    """lgpio module exception (lgpio.py: `class error(Exception)`)."""


_handles: dict[int, int] = {}


def _rig() -> Any:
    from gpiozero._standin import RIG

    return RIG


def gpiochip_open(gpiochip: int) -> int:
    if gpiochip not in _rig().chips:
        raise error("can not open gpiochip")
    handle = len(_handles) + 1
    _handles[handle] = gpiochip
    return handle


def gpiochip_close(handle: int) -> int:
    if _handles.pop(handle, None) is None:
        raise error("unknown handle")
    return 0


def gpio_get_chip_info(handle: int) -> tuple[int, int, str, str]:
    """(status, lines, name, label) as lgpio.gpio_get_chip_info returns them."""
    chip = _handles.get(handle)
    if chip is None:
        raise error("unknown handle")
    label = _rig().chips[chip]
    return (0, 54, f"gpiochip{chip}", label)
