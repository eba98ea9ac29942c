"""Starting and waiting for the demonstration's services: mosquitto, the cloud stub, the agent."""

from __future__ import annotations

import random
import shutil
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from demo.processes import Supervisor
from demo.steps import StepFailed

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_CHOSEN_PORT = 10_000  # above the well-known and most registered services' ports


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for `bind(port 0)` and outgoing connections (Linux's default
    when the file cannot be read)."""
    try:
        low, high = (int(field) for field in path.read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(*, ephemeral: tuple[int, int] | None = None) -> int:
    """A loopback port free now, for a service whose port is written into configuration
    before it starts (the broker's goes into every device bundle).

    Chosen below the kernel's ephemeral range: a port from `bind(port 0)` stays free only
    until something else asks for one, and the next process that binds port 0 or opens a
    connection (a witness, a client) may be handed the same number before our service
    binds it. Ports below the range are never handed out that way. Falls back to the
    kernel's choice when the range starts too low to leave room."""
    low, _high = ephemeral or ephemeral_range()
    if low > LOWEST_CHOSEN_PORT:
        chooser = random.SystemRandom()
        for _ in range(64):
            port = chooser.randrange(LOWEST_CHOSEN_PORT, low)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(what: str, check: Callable[[], bool], *, timeout: float, poll: float = 0.2) -> None:
    """Poll `check` until it is true. Raises StepFailed naming `what` on time-out."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise StepFailed("mosquitto is not installed (make demo installs it through apt)")


def tls_handshake_ok(port: int, ca: Path, cert: Path, key: Path) -> bool:
    """True once the broker completes a TLS handshake with a client certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_and_wait(
    supervisor: Supervisor,
    name: str,
    argv: list[str],
    ready: Callable[[], bool],
    *,
    timeout: float = 20.0,
) -> None:
    """Start a child and wait until `ready`; fail with the end of its log if it dies."""
    supervisor.start(name, argv)

    def alive_and_ready() -> bool:
        supervisor.check_alive(name)
        return ready()

    try:
        wait_for(f"{name} to be ready", alive_and_ready, timeout=timeout)
    except RuntimeError as exc:
        raise StepFailed(str(exc)) from exc
