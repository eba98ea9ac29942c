"""sd_notify reaches a real AF_UNIX datagram socket, as systemd's would.

The test binds the socket systemd would create (a path, and an abstract-namespace name)
and reads what `device.systemd` sends: READY=1 with a status, WATCHDOG=1 at half of
WATCHDOG_USEC while the loop beats, STOPPING=1. Time is passed in, not patched.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.systemd import Notifier, ServiceStatus, Watchdog, watchdog_period_s


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        yield str(path), sock
    finally:
        sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode("utf-8")
    return dict(line.split("=", 1) for line in data.split("\n"))


def pending(sock: socket.socket) -> list[bytes]:
    sock.setblocking(False)
    out: list[bytes] = []
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
        sock.settimeout(2)
    return out


def test_ready_status_watchdog_stopping_reach_a_path_socket(
    notify_socket: tuple[str, socket.socket],
) -> None:
    address, sock = notify_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    assert notifier.ready("sim-doorbell: watching")
    assert receive(sock) == {"READY": "1", "STATUS": "sim-doorbell: watching"}

    clock = FakeMonotonic()
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    dog = Watchdog(notifier, watchdog_period_s(env), monotonic=clock)
    assert dog.interval_s == 10.0

    assert dog.beat()  # the first beat notifies at once
    assert receive(sock) == {"WATCHDOG": "1"}
    clock.now += 9.9
    assert not dog.beat()  # before half the period: nothing is sent
    assert pending(sock) == []
    clock.now += 0.1
    assert dog.beat()
    assert receive(sock) == {"WATCHDOG": "1"}
    assert dog.sent == 2

    assert notifier.stopping("shutting down")
    assert receive(sock) == {"STOPPING": "1", "STATUS": "shutting down"}


def test_abstract_namespace_socket() -> None:
    name = f"doorbell-test-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert receive(sock) == {"WATCHDOG": "1"}
    finally:
        sock.close()


def test_a_hung_loop_stops_feeding_the_watchdog(notify_socket: tuple[str, socket.socket]) -> None:
    # The watchdog has no thread of its own: if the main loop stops calling beat(),
    # no WATCHDOG=1 is sent however much time passes, so systemd restarts the agent.
    address, sock = notify_socket
    clock = FakeMonotonic()
    dog = Watchdog(Notifier(address), 4.0, monotonic=clock)
    assert dog.beat()
    receive(sock)
    clock.now += 3600
    assert pending(sock) == []


def test_a_newline_in_a_status_cannot_forge_a_key(notify_socket: tuple[str, socket.socket]) -> None:
    address, sock = notify_socket
    Notifier(address).status("camera\nREADY=1")
    assert receive(sock) == {"STATUS": "camera READY=1"}


def test_status_is_sent_only_when_it_changes_and_names_the_clock_wait(
    notify_socket: tuple[str, socket.socket],
) -> None:
    address, sock = notify_socket
    status = ServiceStatus(Notifier(address))
    assert status.update(device_id="porch", recording=False, clock_synchronized=False)
    line = receive(sock)["STATUS"]
    assert "waiting for time synchronization" in line
    assert not status.update(device_id="porch", recording=False, clock_synchronized=False)
    assert status.update(device_id="porch", recording=False, clock_synchronized=True)
    assert receive(sock)["STATUS"] == "porch: watching; clock synchronized"


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert not notifier.watchdog()
    assert not notifier.ready("x")
    assert notifier.failures == 2


def test_without_systemd_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    dog = Watchdog.from_environment(notifier, {})
    assert dog.interval_s is None
    assert not dog.beat()


def test_watchdog_for_another_process_is_ignored() -> None:
    env = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert watchdog_period_s(env) is None


@pytest.mark.parametrize(
    "env",
    [
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "5", "WATCHDOG_PID": "x"},
    ],
)
def test_malformed_watchdog_environment_is_named(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="WATCHDOG_"):
        watchdog_period_s(env)


@pytest.mark.parametrize("address", ["", "relative.sock"])
def test_malformed_notify_socket_is_named(address: str) -> None:
    with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
        Notifier.from_environment({"NOTIFY_SOCKET": address})
