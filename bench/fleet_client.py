"""A light MQTT 3.1.1 client on asyncio, for benchmarks that need a thousand sessions.

One `MqttSession` is one TLS connection with its own client certificate; any number of
them share one event loop (one thread), so a fleet costs one process. It speaks only
what a device session needs: CONNECT (clean session, keep-alive off), SUBSCRIBE at
QoS 1, PUBLISH at QoS 0 or 1 (a QoS 1 publish returns a future the broker's PUBACK
resolves) and PUBACK for what the broker delivers at QoS 1. Every delivered message
goes to the session's `on_message(session, topic, payload)` callback, called on the
loop after the PUBACK was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Callable

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, DISCONNECT = 8, 9, 14
SUBACK_FAILURE = 0x80
MAX_REMAINING = 268_435_455  # the largest remaining length MQTT can encode

MessageHandler = Callable[["MqttSession", str, bytes], None]


class FleetClientError(RuntimeError):
    """The broker refused or dropped a session, or sent what this client cannot read."""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


class MqttSession:
    """One client connection; `connect`, `subscribe`, then `publish` and `close`."""

    def __init__(self, client_id: str, context: ssl.SSLContext,
                 on_message: MessageHandler) -> None:
        self.client_id = client_id
        self._context = context
        self._on_message = on_message
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._connack: asyncio.Future[bytes] | None = None
        self._next_id = 0
        self._task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        """TLS handshake and CONNECT; returns once the broker accepted the session."""
        loop = asyncio.get_running_loop()
        self._reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self._context, server_hostname=host),
            timeout_s)
        self._writer = writer
        self._connack = loop.create_future()
        self._task = loop.create_task(self._read_loop(), name=f"mqtt-{self.client_id}")
        variable = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
        writer.write(_packet(CONNECT << 4, variable + _string(self.client_id)))
        answer = await asyncio.wait_for(self._connack, timeout_s)
        if len(answer) != 2 or answer[1] != 0:
            raise FleetClientError(f"{self.client_id}: the broker refused the session "
                                   f"(CONNACK {answer.hex()})")

    async def subscribe(self, topics: list[str], timeout_s: float = 30.0) -> None:
        """Subscribe to `topics` at QoS 1; raises when the broker refuses any of them."""
        pid, future = self._new_id()
        body = struct.pack("!H", pid) + b"".join(_string(t) + b"\x01" for t in topics)
        self._write(_packet((SUBSCRIBE << 4) | 0x02, body))
        codes = await asyncio.wait_for(future, timeout_s)
        if len(codes) != len(topics) or SUBACK_FAILURE in codes:
            raise FleetClientError(f"{self.client_id}: subscription refused ({codes.hex()})")

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future[bytes]:
        """Send PUBLISH; the future resolves on the broker's PUBACK (at once for QoS 0)."""
        if qos == 0:
            self._write(_packet(PUBLISH << 4, _string(topic) + payload))
            done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            done.set_result(b"")
            return done
        pid, future = self._new_id()
        self._write(_packet((PUBLISH << 4) | 0x02, _string(topic) + struct.pack("!H", pid)
                            + payload))
        return future

    async def close(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_packet(DISCONNECT << 4, b""))
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, FleetClientError, OSError):
                await self._task

    def _new_id(self) -> tuple[int, asyncio.Future[bytes]]:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._pending:
                future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                self._pending[self._next_id] = future
                return self._next_id, future
        raise FleetClientError(f"{self.client_id}: 65535 packets in flight")

    def _write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise FleetClientError(f"{self.client_id}: not connected")
        self._writer.write(data)

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length += (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise FleetClientError(f"{self.client_id}: malformed remaining length")
        return first >> 4, first & 0x0F, await reader.readexactly(length)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        error: BaseException = FleetClientError(f"{self.client_id}: the broker closed")
        try:
            while True:
                kind, flags, body = await self._read_packet(self._reader)
                self._dispatch(kind, flags, body)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            error = FleetClientError(f"{self.client_id}: connection lost: {exc!r}")
        finally:
            for future in [*self._pending.values(), self._connack]:
                if future is not None and not future.done():
                    future.set_exception(error)

    def _dispatch(self, kind: int, flags: int, body: bytes) -> None:
        if kind == CONNACK and self._connack is not None and not self._connack.done():
            self._connack.set_result(body)
        elif kind in (PUBACK, SUBACK):
            pid = struct.unpack("!H", body[:2])[0]
            future = self._pending.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(body[2:])
        elif kind == PUBLISH:
            size = struct.unpack("!H", body[:2])[0]
            topic = body[2:2 + size].decode("utf-8")
            rest = body[2 + size:]
            if (flags >> 1) & 0x03:
                self._write(_packet(PUBACK << 4, rest[:2]))
                rest = rest[2:]
            self._on_message(self, topic, rest)
        else:
            raise FleetClientError(f"{self.client_id}: unexpected packet type {kind}")
