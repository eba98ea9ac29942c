"""Stand-in of gpiozero.pins.lgpio (gpiozero 2.0.1, gpiozero/pins/lgpio.py).

`LGPIOFactory(chip=None)` picks the chip as 2.0.1 does: 4 on a Pi 5 (revision
0x17 in bits 4-11), else 0, with no look at which chip carries the header; it opens the
chip through lgpio (the stand-in's `lgpio.gpiochip_open` raises lgpio.error for a chip
that does not exist, as the real one does).
"""

from __future__ import annotations

from typing import Any

import lgpio

from gpiozero._standin import RIG


class LGPIOFactory:
    def __init__(self, chip: int | None = None) -> None:
        if chip is None:
            chip = 4 if (RIG.revision & 0xFF0) >> 4 == 0x17 else 0
        RIG.record(f"LGPIOFactory(chip={chip})")
        self._handle: int | None = lgpio.gpiochip_open(chip)
        self._chip = chip

    @property
    def chip(self) -> int:
        return self._chip

    def close(self) -> None:
        if self._handle is not None:
            lgpio.gpiochip_close(self._handle)
            self._handle = None

    def __repr__(self) -> str:
        return f"<LGPIOFactory chip={self._chip}>"

    def claim(self, pin: int, device: Any) -> None:
        if self._handle is None:
            raise lgpio.error("unknown handle")
        RIG.claim(pin, device)
