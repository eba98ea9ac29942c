"""A small TCP proxy that delays every byte by a fixed time in each direction, and can
drop one connection once mid-transfer. For `bench_release_uplink.py`, where netem is
not available to add latency to the shaped link.

Each accepted connection gets a fresh upstream connection and two pumps (one per
direction). A pump's reader stamps each chunk with the time it arrived and queues it
(at most `QUEUE_CHUNKS` x 64 KiB, so a fast sender feels the back-pressure of the
link behind the proxy); its writer sends each chunk once `delay` has passed since
the stamp. A round trip through the proxy therefore takes 2 x `delay` longer.

SIGUSR1 arms a cut: the first connection on which `--cut-after` bytes arrive from
the client after the arming is reset there (both sides), once; the client must
reconnect and resume. On the service's side of a shaped link those are bytes that
crossed the link.

Run: python bench/delay_proxy.py --listen HOST:PORT --to HOST:PORT [--delay-ms 20]
     [--cut-after BYTES]; prints "ready PORT" once listening (PORT 0 picks one).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import signal
import socket
import struct
import sys
import threading
import time
from types import FrameType

CHUNK = 64 * 1024
QUEUE_CHUNKS = 16
LINGER_RST = struct.pack("ii", 1, 0)


class Cut:
    """The armed cut: shared by every upstream pump, fired at most once per arming."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.armed = False
        self.lock = threading.Lock()

    def arm(self, _signum: int, _frame: FrameType | None) -> None:
        self.armed = True


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def close_hard(*sockets: socket.socket) -> None:
    """Reset the connections. `shutdown` first: a plain close would not wake the other
    pump's thread blocked in recv on the same socket, and the kernel would keep the
    connection open (no FIN, no RST) for as long as that call lasts."""
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def pump(src: socket.socket, dst: socket.socket, delay: float, cut: Cut | None) -> None:
    """Copy src -> dst, each chunk `delay` seconds after it arrived. With `cut`, count
    the bytes received from src once armed, and reset both connections at the mark."""
    chunks: queue.Queue[tuple[float, bytes]] = queue.Queue(maxsize=QUEUE_CHUNKS)

    def write() -> None:
        try:
            while True:
                due, data = chunks.get()
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                dst.sendall(data)
        except OSError:
            close_hard(src, dst)

    threading.Thread(target=write, daemon=True).start()
    carried = 0
    counting = False
    try:
        while True:
            data = src.recv(CHUNK)
            if cut is not None and cut.armed:
                with cut.lock:
                    carried = carried + len(data) if counting else len(data)
                    counting = True
                    if cut.armed and carried >= cut.after:
                        cut.armed = False
                        print(f"cut after {carried} bytes", flush=True)
                        close_hard(src, dst)
                        data = b""
            chunks.put((time.monotonic() + delay, data))
            if not data:
                return
    except OSError:
        close_hard(src, dst)
        with contextlib.suppress(queue.Full):
            chunks.put((0.0, b""), timeout=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--cut-after", type=int, default=None)
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    target = parse_address(args.to)
    cut = Cut(args.cut_after) if args.cut_after is not None else None
    if cut is not None:
        signal.signal(signal.SIGUSR1, cut.arm)
    listener = socket.create_server(parse_address(args.listen))
    print(f"ready {listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            close_hard(client)
            continue
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pump, args=(client, upstream, delay, cut), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, delay, None), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
