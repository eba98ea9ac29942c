"""Evidence PUT bodies sent straight from the re-sealed file with sendfile(2).

Through httpx every body byte is read from the file into Python and written into the
socket by httpcore: two copies and a pass through h11 per read, about 0.6 ms of CPU per
released MB on the doorbell, more than a third of re-sealing it. `SendfileTransport`
sends a `FileBody` with `socket.sendfile` instead (the kernel copies from the page cache
into the socket), on HTTP/1.1 connections of its own (`http.client`, kept alive and
reused; an idle one the server closed is not reused). The uploader calls its
`send_file` directly for a clip's PUTs, with the header lines httpx's client would
build, so the bytes on the wire are what httpx would send and its client's CPU around
each PUT is saved. As an httpx transport it sends a request whose stream is a
`FileBody` the same way, with the request's headers; every other request, and every
body over https (where the bytes must pass through TLS), goes to the httpx transport it
wraps.

`FileBody` is also an ordinary httpx stream (reads of `read_bytes`), so any transport
can send it: tests put transports of their own under the uploader.

Errors are httpx's, so the uploader's retries see what they would see from httpx: a
failed connect is `httpx.ConnectError` (`ConnectTimeout`), a failure while sending
`httpx.WriteError` (`WriteTimeout`), while reading the answer `httpx.ReadError`
(`ReadTimeout`), an answer that is not HTTP `httpx.RemoteProtocolError`. A file that
ends before `length` raises `FileEnded`, an OSError, as the uploader documents.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import httpx


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


MAX_ANSWER_BYTES = 64 * 1024  # read no more of an answer to a PUT than this


class FileEnded(OSError):
    """The file ended before the body's length."""


class FileBody(httpx.SyncByteStream):
    """Bytes [offset, offset + length) of an open file, as a request body."""

    def __init__(self, handle: BinaryIO, offset: int, length: int, *, read_bytes: int) -> None:
        self.handle = handle
        self.offset = offset
        self.length = length
        self._read_bytes = read_bytes

    def __iter__(self) -> Iterator[bytes]:
        self.handle.seek(self.offset)
        left = self.length
        while left:
            piece = self.handle.read(min(left, self._read_bytes))
            if not piece:
                raise FileEnded(f"{self._name()}: ended {left} bytes early")
            left -= len(piece)
            yield piece

    def send(self, sock: socket.socket) -> None:
        """Send the bytes with sendfile(2), the socket blocking for the while with its
        timeout as SO_SNDTIMEO: the kernel waits for room in the socket, not a Python
        loop around poll(2) (the uplink drains the socket many times per clip). Raises
        FileEnded, TimeoutError when no byte left for the socket's timeout, else
        OSError from the socket."""
        timeout = sock.gettimeout()
        seconds = timeout if timeout is not None else 0.0
        sock.setblocking(True)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(seconds))
        try:
            offset, left = self.offset, self.length
            while left:
                try:
                    sent = os.sendfile(sock.fileno(), self.handle.fileno(), offset, left)
                except BlockingIOError as exc:  # SO_SNDTIMEO passed without progress
                    raise TimeoutError(f"no byte sent for {seconds:g} s") from exc
                if sent == 0:
                    raise FileEnded(f"{self._name()}: ended {left} bytes early")
                offset += sent
                left -= sent
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(0.0))
            sock.settimeout(timeout)

    def _name(self) -> str:
        return str(getattr(self.handle, "name", "file"))


def _readable(sock: socket.socket) -> bool:
    """True when `sock` has something to read now (poll(2): any descriptor number)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Failed(Exception):
    """Which step failed, for the httpx error it becomes."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(step)
        self.step = step
        self.cause = cause


def _error(step: str, cause: BaseException) -> httpx.TransportError:
    """The httpx error for `cause` at `step` (httpx's client attaches its request)."""
    message = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, http.client.HTTPException):
        return httpx.RemoteProtocolError(message)
    timeout = isinstance(cause, TimeoutError)
    if step == "connect":
        return (httpx.ConnectTimeout if timeout else httpx.ConnectError)(message)
    if step == "write":
        return (httpx.WriteTimeout if timeout else httpx.WriteError)(message)
    return (httpx.ReadTimeout if timeout else httpx.ReadError)(message)


class SendfileTransport(httpx.BaseTransport):
    """Sends `FileBody` requests over plain HTTP with sendfile (`send_file`, or as an
    httpx transport); the rest through `inner`."""

    def __init__(self, inner: httpx.BaseTransport, *, timeout_s: float) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.stream
        if not isinstance(body, FileBody) or request.url.scheme != "http":
            return self._inner.handle_request(request)
        status, headers, content = self.send_file(request.method, request.url,
                                                  request.headers.raw, body)
        return httpx.Response(status, headers=headers, content=content, request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    def send_file(self, method: str, url: httpx.URL, headers: Sequence[tuple[bytes, bytes]],
                  body: FileBody) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send `method url` over plain HTTP with exactly the header lines `headers` (Host
        and Content-Length among them) and `body` by sendfile, on a kept connection to
        the URL's host; the answer's status, header lines and body, as it came (not
        decoded; at most MAX_ANSWER_BYTES). Raises httpx.TransportError (the module's
        docstring says which) and FileEnded."""
        key = (url.host, url.port or 80)
        connection = self._take(key)
        try:
            status, answer_headers, content, reusable = self._exchange(
                connection, method, url.raw_path.decode("ascii"), headers, body)
        except _Failed as failed:
            connection.close()
            raise _error(failed.step, failed.cause) from failed.cause
        except BaseException:  # FileEnded: the connection is mid-body
            connection.close()
            raise
        if reusable:
            with self._lock:
                self._idle.setdefault(key, []).append(connection)
        else:
            connection.close()
        return status, answer_headers, content

    def _take(self, key: tuple[str, int]) -> http.client.HTTPConnection:
        """An idle connection the server has not closed, else a new one (unconnected)."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None:
                return http.client.HTTPConnection(key[0], key[1], timeout=self._timeout_s)
            if connection.sock is not None and not _readable(connection.sock):
                return connection  # nothing to read on an idle connection: still open
            connection.close()  # closed by the server (or it sent what we did not ask)

    def _exchange(self, connection: http.client.HTTPConnection, method: str, target: str,
                  headers: Sequence[tuple[bytes, bytes]], body: FileBody
                  ) -> tuple[int, list[tuple[str, str]], bytes, bool]:
        if connection.sock is None:
            try:
                connection.connect()
            except (OSError, http.client.HTTPException) as exc:
                raise _Failed("connect", exc) from exc
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name.decode("latin-1"), value)
            connection.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            raise _Failed("write", exc) from exc
        sock = connection.sock
        assert sock is not None
        try:
            body.send(sock)
        except FileEnded:
            raise
        except OSError as exc:  # TimeoutError too
            raise _Failed("write", exc) from exc
        try:
            answer = connection.getresponse()
            content = answer.read(MAX_ANSWER_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise _Failed("read", exc) from exc
        if len(content) > MAX_ANSWER_BYTES:  # the endpoint answers in a few hundred bytes
            raise _Failed("read", http.client.HTTPException(
                f"an answer of over {MAX_ANSWER_BYTES} bytes to a PUT"))
        return answer.status, answer.getheaders(), content, not answer.will_close

    def close(self) -> None:
        with self._lock:
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
        for connection in idle:
            connection.close()
        self._inner.close()
