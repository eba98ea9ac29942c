"""The `Clock` seam: what time it is, and whether that time can be trusted.

A Raspberry Pi has no real-time clock: after a power cut it boots at whatever time the
file system last saw (fake-hwclock) or at 1970 until NTP has synchronized it. The token
rules `nbf - skew <= now < exp` mean nothing on such a clock, so the release handler
defers a token until `synchronized()` is true (ADR 0009).

`KernelClock` asks the kernel through `ntp_adjtime(2)` with no mode bits set (read-only,
no privilege needed): the clock is synchronized when the call does not return
`TIME_ERROR` and the status word does not carry `STA_UNSYNC`. chrony, ntpd and
systemd-timesyncd all clear `STA_UNSYNC` once they have disciplined the clock.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

TIME_ERROR = 5
STA_UNSYNC = 0x0040


class Clock(Protocol):
    """The current time (timezone-aware UTC) and whether it is known to be right."""

    def now(self) -> datetime: ...

    def synchronized(self) -> bool: ...


class _Timex(ctypes.Structure):
    # The head of glibc's `struct timex` (<sys/timex.h>); the tail is left as room so
    # the kernel never writes past the buffer on any architecture.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


class KernelClock:
    """The system clock, trusted only when the kernel says NTP has synchronized it.

    If libc or the call is unavailable, the clock is reported unsynchronized (fail
    closed): tokens wait rather than being checked against a time nobody vouches for.
    """

    def __init__(self) -> None:
        self._call = _load_adjtime()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def synchronized(self) -> bool:
        if self._call is None:
            return False
        timex = _Timex()
        state = self._call(ctypes.byref(timex))
        if state < 0 or state == TIME_ERROR:
            return False
        return not (timex.status & STA_UNSYNC)


def _load_adjtime() -> Callable[..., int] | None:
    try:  # the C library the interpreter already runs on: no `ldconfig -p` child process
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    for symbol in ("ntp_adjtime", "adjtimex"):
        func = getattr(libc, symbol, None)
        if func is not None:
            func.restype = ctypes.c_int
            func.argtypes = [ctypes.POINTER(_Timex)]
            call: Callable[..., int] = func
            return call
    return None


class UnsafeAssumedSynchronizedClock:
    """The system clock, declared synchronized without asking anyone.

    For development machines and containers whose kernel never reports NTP state.
    Never use it on a Pi: a wrong clock makes expired tokens valid again.
    """

    def now(self) -> datetime:
        return datetime.now(UTC)

    def synchronized(self) -> bool:
        return True


class ManualClock:
    """A clock the caller sets: for tests and the simulator. Thread-safe."""

    def __init__(self, now: datetime, *, synchronized: bool = True) -> None:
        if now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware datetime")
        self._lock = threading.Lock()
        self._now = now
        self._synchronized = synchronized

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def synchronized(self) -> bool:
        with self._lock:
            return self._synchronized

    def set(self, now: datetime, *, synchronized: bool | None = None) -> None:
        if now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware datetime")
        with self._lock:
            self._now = now
            if synchronized is not None:
                self._synchronized = synchronized

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta

    def set_synchronized(self, value: bool) -> None:
        with self._lock:
            self._synchronized = value


class OffsetClock:
    """Real time shifted by a fixed offset, with a switchable sync flag (tests, demo)."""

    def __init__(self, *, offset: timedelta = timedelta(0), synchronized: bool = True) -> None:
        self._lock = threading.Lock()
        self._offset = offset
        self._synchronized = synchronized

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def synchronized(self) -> bool:
        with self._lock:
            return self._synchronized

    def set_synchronized(self, value: bool) -> None:
        with self._lock:
            self._synchronized = value


def clock_from_setting(name: str) -> Clock:
    """The clock named by `[release] clock`. Raises ValueError for an unknown name."""
    if name == "kernel":
        return KernelClock()
    if name == "unsafe-assume-synchronized":
        return UnsafeAssumedSynchronizedClock()
    raise ValueError(f"unknown clock {name!r}")
