"""sd_notify(3) without libsystemd: readiness, status text and the service watchdog.

systemd hands a `Type=notify` service the address of a datagram socket in
``NOTIFY_SOCKET`` (a path, or an abstract-namespace name written with a leading ``@``)
and, when ``WatchdogSec=`` is set, the watchdog period in ``WATCHDOG_USEC`` (with
``WATCHDOG_PID`` naming the process that must feed it). Each notification is one
datagram of newline-separated ``KEY=value`` lines.

`Notifier` sends those datagrams. It never raises on a failed send: a service manager
that went away must not take the doorbell down with it; failures are logged once and
counted. `Watchdog` turns the main loop's heartbeats into ``WATCHDOG=1`` at half the
period systemd asked for; it has no thread of its own, so a main loop that hangs stops
feeding it and systemd restarts the agent, which is the point of a watchdog.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

MAX_STATUS_CHARS = 1024  # a status line longer than this is cut, never refused


class Notifier:
    """Sends sd_notify datagrams to one socket address, or nowhere when disabled.

    Build it with `Notifier.from_environment()` in the agent; `Notifier(None)` is the
    disabled notifier used when the agent is not started by systemd.
    """

    def __init__(self, address: str | None) -> None:
        if address is not None and not address:
            raise ValueError("NOTIFY_SOCKET is set but empty")
        if address is not None and not (address.startswith("/") or address.startswith("@")):
            raise ValueError(f"NOTIFY_SOCKET {address!r} is neither a path nor '@abstract'")
        self._address = address
        self.failures = 0
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for, or a disabled one when NOTIFY_SOCKET is unset.

        Raises ValueError when NOTIFY_SOCKET is set to something that is not a socket
        address (an empty string, a relative path): a broken unit file, said at start.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        return cls(address if address is not None else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str) -> bool:
        """Send one datagram of ``KEY=value`` lines. Returns True when it was sent.

        Keys are upper-cased (``status="x"`` sends ``STATUS=x``). Newlines inside a
        value would start a forged key, so they are replaced by spaces.
        """
        if self._address is None or not fields:
            return False
        lines = []
        for key, value in fields.items():
            clean = value.replace("\n", " ").replace("\r", " ")
            lines.append(f"{key.upper()}={clean}")
        payload = "\n".join(lines).encode("utf-8")
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall(payload)
        except OSError as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                log.warning("sd_notify to %s failed: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """Tell systemd the agent has started (``READY=1``) and what it is doing."""
        return self.notify(ready="1", status=_cut(status))

    def status(self, text: str) -> bool:
        """Set the line `systemctl status doorbell-agent` shows."""
        return self.notify(status=_cut(text))

    def watchdog(self) -> bool:
        """Feed the watchdog once (``WATCHDOG=1``)."""
        return self.notify(watchdog="1")

    def stopping(self, status: str = "stopping") -> bool:
        """Tell systemd a clean stop has begun (``STOPPING=1``)."""
        return self.notify(stopping="1", status=_cut(status))


def watchdog_period_s(
    environ: Mapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """The watchdog period systemd set for this process, in seconds, or None.

    None when ``WATCHDOG_USEC`` is unset, or ``WATCHDOG_PID`` names another process (the
    variable was inherited from a parent). Raises ValueError when ``WATCHDOG_USEC`` is
    not a positive integer, or ``WATCHDOG_PID`` is not an integer.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if raw is None:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner is not None:
        if not owner.strip().isdigit():
            raise ValueError(f"WATCHDOG_PID {owner!r} is not a process id")
        if int(owner) != (os.getpid() if pid is None else pid):
            return None
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise ValueError(f"WATCHDOG_USEC {raw!r} is not a positive number of microseconds")
    return int(raw) / 1_000_000


class Watchdog:
    """Feeds systemd's watchdog from the main loop, at half the period.

    Call `beat()` once per main-loop iteration: it sends ``WATCHDOG=1`` when half the
    period has passed since the last notification and does nothing otherwise, so it is
    cheap to call at frame rate. `monotonic` is passed in so tests set the time.
    """

    def __init__(
        self,
        notifier: Notifier,
        period_s: float | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if period_s is not None and period_s <= 0:
            raise ValueError("watchdog period must be positive")
        self._notifier = notifier
        self._interval = None if period_s is None else period_s / 2
        self._monotonic = monotonic
        self._last: float | None = None
        self.sent = 0

    @classmethod
    def from_environment(
        cls, notifier: Notifier, environ: Mapping[str, str] | None = None
    ) -> Watchdog:
        """A watchdog with systemd's period, inactive when none was set.

        Raises ValueError for a malformed ``WATCHDOG_USEC`` / ``WATCHDOG_PID``.
        """
        return cls(notifier, watchdog_period_s(environ))

    @property
    def interval_s(self) -> float | None:
        """Seconds between notifications (half of WatchdogSec), None when inactive."""
        return self._interval

    def beat(self) -> bool:
        """The main loop is alive: notify systemd if it is time. Returns True when sent."""
        if self._interval is None or not self._notifier.enabled:
            return False
        now = self._monotonic()
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        if self._notifier.watchdog():
            self.sent += 1
            return True
        return False


class ServiceStatus:
    """The agent's one-line status for systemd, sent only when it changes.

    The line names what the agent is doing and, on a Pi without a real-time clock,
    that release tokens wait until the clock is synchronized (ADR 0009): a token's
    validity window means nothing against a clock that booted in 1970.
    """

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._last: str | None = None

    @staticmethod
    def describe(*, device_id: str, recording: bool, clock_synchronized: bool) -> str:
        activity = "recording a clip" if recording else "watching"
        clock = (
            "clock synchronized"
            if clock_synchronized
            else "waiting for time synchronization before judging release tokens"
        )
        return f"{device_id}: {activity}; {clock}"

    def update(self, *, device_id: str, recording: bool, clock_synchronized: bool) -> bool:
        """Send the status line if it differs from the last one. Returns True when sent."""
        line = self.describe(
            device_id=device_id, recording=recording, clock_synchronized=clock_synchronized
        )
        if line == self._last:
            return False
        self._last = line
        return self._notifier.status(line)

    @property
    def last(self) -> str | None:
        return self._last


def _cut(text: str) -> str:
    return text if len(text) <= MAX_STATUS_CHARS else text[: MAX_STATUS_CHARS - 1] + "…"
