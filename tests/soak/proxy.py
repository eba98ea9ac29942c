"""A TCP proxy on loopback that can cut every connection it carries, on command.

The soak puts it between the agents and the cloud stub's HTTP API (the deployment's
`api.url` names the proxy), so "the uplink dropped mid-clip" is a real reset of a real
connection, seen by the agent's HTTP client as such.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CHUNK = 16 * 1024
RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass
class CutProxy:
    """Forwards 127.0.0.1:`listen_port` to 127.0.0.1:`target_port`."""

    target_port: int
    listen_port: int = 0
    # Uploads are paced to this rate (bytes/s), so that "mid-clip" lasts long enough to
    # be hit: a 550 kB clip takes about a quarter of a second, like a slow uplink.
    up_rate: float = 2_000_000.0
    forwarded_up: int = 0  # bytes from clients to the target since the last `mark()`
    _sock: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pairs: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    cuts: int = 0

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.listen_port))
        sock.listen(64)
        sock.settimeout(0.2)
        self.listen_port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, name="soak-proxy", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        if self._sock is not None:
            self._sock.close()

    def mark(self) -> None:
        with self._lock:
            self.forwarded_up = 0

    def cut(self) -> int:
        """Reset every connection now (RST, not FIN); returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for end in (client, upstream):
                with contextlib.suppress(OSError):
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
                with contextlib.suppress(OSError):
                    end.close()
        if pairs:
            self.cuts += 1
        return len(pairs)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                if up:
                    time.sleep(len(data) / self.up_rate)
                dst.sendall(data)
                if up:
                    with self._lock:
                        self.forwarded_up += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
