"""Two network namespaces joined by a veth pair, the device side shaped with `tbf`.

`ShapedLink.create()` makes ``<name>-dev`` and ``<name>-svc`` (``ip netns add``), a
veth pair with ``DEV_ADDRESS`` in the first and ``SVC_ADDRESS`` in the second,
loopback up in both, and a token bucket filter on the device side's egress (the
doorbell's uplink). Nothing outside the two namespaces is touched: no address, route
or rule of the host's. `close()` deletes both namespaces (which deletes the veth pair
with them); it is idempotent and runs from `with`, at exit and on SIGTERM.

`ShapedLink.enter(side)` moves the *calling thread* into a namespace for the duration
of a `with` block (setns(2) on that thread only): sockets and child processes
created inside it belong to that namespace, threads started inside it stay there.
Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

CLONE_NEWNET = 0x40000000
DEV_ADDRESS = "10.217.0.1"
SVC_ADDRESS = "10.217.0.2"
Side = Literal["dev", "svc"]

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class ShapedLink:
    name: str
    rate_mbit: float
    _created: list[str] = field(default_factory=list)

    @property
    def dev(self) -> str:
        return f"{self.name}-dev"

    @property
    def svc(self) -> str:
        return f"{self.name}-svc"

    @property
    def dev_if(self) -> str:
        return f"{self.name[:10]}d"

    @classmethod
    def create(cls, name: str, *, rate_mbit: float) -> ShapedLink:
        link = cls(name=name, rate_mbit=rate_mbit)
        atexit.register(link.close)
        try:
            link._build()
        except BaseException:
            link.close()
            raise
        return link

    def _build(self) -> None:
        for ns in (self.dev, self.svc):
            _run("ip", "netns", "add", ns)
            self._created.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        svc_if = f"{self.name[:10]}s"
        _run("ip", "-n", self.dev, "link", "add", self.dev_if, "type", "veth",
             "peer", "name", svc_if, "netns", self.svc)
        _run("ip", "-n", self.dev, "addr", "add", f"{DEV_ADDRESS}/30", "dev", self.dev_if)
        _run("ip", "-n", self.svc, "addr", "add", f"{SVC_ADDRESS}/30", "dev", svc_if)
        _run("ip", "-n", self.dev, "link", "set", self.dev_if, "up")
        _run("ip", "-n", self.svc, "link", "set", svc_if, "up")
        # The uplink: 20 Mbit/s leaving the device, a 64 KiB bucket, at most 100 ms queued.
        _run("tc", "-n", self.dev, "qdisc", "add", "dev", self.dev_if, "root", "tbf",
             "rate", f"{self.rate_mbit:g}mbit", "burst", "64kb", "latency", "100ms")

    def sent_bytes(self) -> int:
        """Bytes the device side's shaper has sent so far (what the link carried up)."""
        out = _run("tc", "-n", self.dev, "-s", "qdisc", "show", "dev", self.dev_if)
        match = re.search(r"Sent (\d+) bytes", out)
        if match is None:
            raise RuntimeError(f"no byte count in tc's statistics: {out!r}")
        return int(match.group(1))

    def bound_s(self, wire_bytes: int) -> float:
        """Seconds the shaped link needs to carry `wire_bytes`."""
        return wire_bytes * 8 / (self.rate_mbit * 1_000_000)

    @contextlib.contextmanager
    def enter(self, side: Side) -> Iterator[None]:
        """Run the calling thread in the `side` namespace for the block."""
        target = self.dev if side == "dev" else self.svc
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{target}", os.O_RDONLY)
        try:
            _setns(there)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(there)
            os.close(home)

    def close(self) -> None:
        while self._created:
            ns = self._created.pop()
            with contextlib.suppress(RuntimeError):
                _run("ip", "netns", "delete", ns)

    def __enter__(self) -> ShapedLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
