"""Which /dev/gpiochipN carries the Raspberry Pi's 40-pin header.

gpiozero 2.0.1's lgpio factory opens gpiochip4 on every Pi 5 and gpiochip0 elsewhere
(gpiozero/pins/lgpio.py). From kernel 6.6.45 a Pi 5's header (the RP1's
``pinctrl-rp1``) is gpiochip0, so that guess opens a chip without the header, or none.
The header is found here by the chip's label instead (docs/raspberry-pi.md, "Pi 5").

`header_chip` is pure; `read_chip_labels` asks lgpio (gpio_get_chip_info) for the
label of each /dev/gpiochipN it can open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

# The pin controller of the header, by SoC: Pi 5, Pi 4 / 400 / CM4, Pi 3 / Zero 2 and older.
HEADER_LABELS = ("pinctrl-rp1", "pinctrl-bcm2711", "pinctrl-bcm2835")


def header_chip(labels: Mapping[int, str]) -> int | None:
    """The number of the chip whose label is a header pin controller, or None."""
    for wanted in HEADER_LABELS:
        for number in sorted(labels):
            if labels[number] == wanted:
                return number
    return None


def describe(labels: Mapping[int, str]) -> str:
    """`gpiochip0 (pinctrl-rp1), gpiochip10 (...)`, or `no /dev/gpiochip*`."""
    if not labels:
        return "no /dev/gpiochip*"
    return ", ".join(f"gpiochip{n} ({labels[n]})" for n in sorted(labels))


def chip_numbers(dev: Path) -> list[int]:
    numbers = []
    for path in dev.glob("gpiochip*"):
        suffix = path.name[len("gpiochip") :]
        if suffix.isdigit():
            numbers.append(int(suffix))
    return sorted(numbers)


def read_chip_labels(lgpio: ModuleType, dev: Path = Path("/dev")) -> dict[int, str]:
    """{N: label} for each /dev/gpiochipN; a chip lgpio cannot open or ask is listed as
    ``cannot open: <lgpio's error>`` (no permission, say), so a message can name it."""
    labels: dict[int, str] = {}
    for number in chip_numbers(dev):
        try:
            handle = lgpio.gpiochip_open(number)
        except Exception as exc:  # lgpio.error
            labels[number] = f"cannot open: {exc}"
            continue
        try:
            labels[number] = str(lgpio.gpio_get_chip_info(handle)[3])
        except Exception as exc:
            labels[number] = f"cannot read its label: {exc}"
        finally:
            with contextlib.suppress(Exception):  # a probe handle: nothing more to do
                lgpio.gpiochip_close(handle)
    return labels
