"""Starting and waiting for the demonstration's services: mosquitto, the cloud stub, the agent."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from demo.processes import Supervisor
from demo.steps import StepFailed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
