"""The demonstration's fixed ports come from below the kernel's ephemeral range, where
no `bind(port 0)` or outgoing connection can be handed the same number before the
service binds it (a witness once took the broker's port that way)."""

from __future__ import annotations

import socket
from pathlib import Path

from demo.services import LOWEST_CHOSEN_PORT, ephemeral_range, free_port


def test_a_chosen_port_is_below_the_ephemeral_range_and_free() -> None:
    low, _high = ephemeral_range()
    for _ in range(20):
        port = free_port()
        if low > LOWEST_CHOSEN_PORT:
            assert LOWEST_CHOSEN_PORT <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_chosen() -> None:
    held = []
    try:
        for _ in range(50):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", free_port()))
            held.append(sock)
        taken = {sock.getsockname()[1] for sock in held}
        assert len(taken) == len(held)
    finally:
        for sock in held:
            sock.close()


def test_a_range_with_no_room_below_it_leaves_the_choice_to_the_kernel() -> None:
    port = free_port(ephemeral=(LOWEST_CHOSEN_PORT, 65535))
    assert port >= 1024


def test_the_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    good = tmp_path / "range"
    good.write_text("40000\t50000\n", encoding="ascii")
    assert ephemeral_range(good) == (40000, 50000)
    broken = tmp_path / "broken"
    broken.write_text("nonsense\n", encoding="ascii")
    assert ephemeral_range(broken) == (32768, 60999)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
