"""`SendfileTransport` against a real HTTP/1.1 server (the standard library's, in a
thread): a `FileBody` arrives byte for byte with httpx's headers, connections are kept
alive and reused, one the server closed is not, a file that ends early raises OSError
and leaves no half-sent request behind, a peer that stops reading is a write timeout,
and other requests go to the inner transport. The uploader sends a clip's PUTs to the
transport's `send_file` without httpx's client, in the same bytes as httpx sends, and
a refused connection is still a retried `ConnectError`."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.release.errors import UploadFailed
from device.release.sendfile import MAX_ANSWER_BYTES, FileBody, FileEnded, SendfileTransport
from device.release.uploader import HttpUploader, UploadLimits


class Received:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.peers: list[tuple[str, int]] = []
        self.close_next = False
        self.answer_bytes = 0  # > 0: answer with this many bytes instead


def serve(received: Received) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self) -> None:
            length = int(self.headers["Content-Length"])
            received.bodies.append(self.rfile.read(length))
            received.headers.append({k.lower(): v for k, v in self.headers.items()})
            received.peers.append(self.client_address)
            body = b'{"offset": %d}' % length
            if received.answer_bytes:
                body = b"x" * received.answer_bytes
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if received.close_next:
                received.close_next = False
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def received() -> Iterator[tuple[Received, str]]:
    got = Received()
    server, url = serve(got)
    yield got, url
    server.shutdown()
    server.server_close()


class Inner(httpx.BaseTransport):
    """Stands for httpx's transport: answers every request itself."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url}")
        return httpx.Response(204, request=request)


def put(client: httpx.Client, url: str, body: FileBody) -> httpx.Response:
    request = client.build_request("PUT", url, headers={"Content-Length": str(body.length),
                                                        "X-Signed": "yes"})
    request.stream = body
    return client.send(request)


def test_file_bodies_arrive_whole_on_one_kept_connection(
    received: tuple[Received, str], tmp_path: Path
) -> None:
    got, url = received
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "clip.age"
    path.write_bytes(data)
    inner = Inner()
    with httpx.Client(transport=SendfileTransport(inner, timeout_s=10)) as client, \
            path.open("rb") as handle:
        first = put(client, f"{url}/v1/evidence/j/c?offset=0",
                    FileBody(handle, 0, 1_000_000, read_bytes=4096))
        second = put(client, f"{url}/v1/evidence/j/c?offset=1000000",
                     FileBody(handle, 1_000_000, len(data) - 1_000_000, read_bytes=4096))
    assert (first.status_code, first.json()) == (200, {"offset": 1_000_000})
    assert second.json() == {"offset": len(data) - 1_000_000}
    assert b"".join(got.bodies) == data
    assert got.headers[0]["x-signed"] == "yes"
    assert got.headers[0]["host"] == url.removeprefix("http://")
    assert got.peers[0] == got.peers[1]  # the connection was kept and reused
    assert inner.seen == []


def test_a_connection_the_server_closed_is_not_reused(
    received: tuple[Received, str], tmp_path: Path
) -> None:
    got, url = received
    path = tmp_path / "clip.age"
    path.write_bytes(b"x" * 5000)
    got.close_next = True
    with httpx.Client(transport=SendfileTransport(Inner(), timeout_s=10)) as client, \
            path.open("rb") as handle:
        for _ in range(2):
            assert put(client, f"{url}/p", FileBody(handle, 0, 5000, read_bytes=1024)
                       ).status_code == 200
    assert got.peers[0] != got.peers[1]


def test_a_file_that_ends_early_raises_oserror_and_the_next_request_is_whole(
    received: tuple[Received, str], tmp_path: Path
) -> None:
    got, url = received
    path = tmp_path / "clip.age"
    path.write_bytes(b"y" * 1000)
    with httpx.Client(transport=SendfileTransport(Inner(), timeout_s=10)) as client, \
            path.open("rb") as handle:
        with pytest.raises(FileEnded, match="ended 500 bytes early"):
            put(client, f"{url}/p", FileBody(handle, 0, 1500, read_bytes=1024))
        assert isinstance(FileEnded("x"), OSError)
        assert put(client, f"{url}/p", FileBody(handle, 0, 1000, read_bytes=1024)
                   ).status_code == 200
    assert got.bodies[-1] == b"y" * 1000


def test_other_requests_and_https_go_to_the_inner_transport(tmp_path: Path) -> None:
    path = tmp_path / "clip.age"
    path.write_bytes(b"z" * 10)
    inner = Inner()
    with httpx.Client(transport=SendfileTransport(inner, timeout_s=10)) as client, \
            path.open("rb") as handle:
        assert client.get("http://127.0.0.1:9/offset").status_code == 204
        assert client.put("http://127.0.0.1:9/bytes", content=b"abc").status_code == 204
        assert put(client, "https://127.0.0.1:9/tls",
                   FileBody(handle, 0, 10, read_bytes=4)).status_code == 204
    assert inner.seen == ["GET http://127.0.0.1:9/offset", "PUT http://127.0.0.1:9/bytes",
                          "PUT https://127.0.0.1:9/tls"]


def test_a_refused_connection_is_httpx_connect_error(tmp_path: Path) -> None:
    path = tmp_path / "clip.age"
    path.write_bytes(b"z" * 10)
    with httpx.Client(transport=SendfileTransport(Inner(), timeout_s=10)) as client, \
            path.open("rb") as handle, pytest.raises(httpx.ConnectError):
        put(client, "http://127.0.0.1:9/p", FileBody(handle, 0, 10, read_bytes=4))


def test_a_peer_that_stops_reading_is_a_write_timeout(tmp_path: Path) -> None:
    path = tmp_path / "clip.age"
    path.write_bytes(b"w" * (32 * 1024 * 1024))  # more than both sockets' buffers hold
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/p"
    try:
        with httpx.Client(transport=SendfileTransport(Inner(), timeout_s=0.5)) as client, \
                path.open("rb") as handle, pytest.raises(httpx.WriteTimeout):
            put(client, url, FileBody(handle, 0, 32 * 1024 * 1024, read_bytes=4096))
    finally:
        for sock in (*accepted, listener):
            sock.close()


def test_an_answer_larger_than_any_the_endpoint_gives_is_not_read_whole(
    received: tuple[Received, str], tmp_path: Path
) -> None:
    got, url = received
    got.answer_bytes = MAX_ANSWER_BYTES + 1
    path = tmp_path / "clip.age"
    path.write_bytes(b"sealed")
    with httpx.Client(transport=SendfileTransport(Inner(), timeout_s=10)) as client, \
            path.open("rb") as handle, pytest.raises(httpx.RemoteProtocolError,
                                                     match="an answer of over"):
        put(client, f"{url}/v1/evidence/j/c?offset=0", FileBody(handle, 0, 6, read_bytes=4096))
    assert got.bodies == [b"sealed"]


class Spy(SendfileTransport):
    """The uploader's transport, noting what reaches it through httpx's client."""

    def __init__(self) -> None:
        super().__init__(Inner(), timeout_s=10)
        self.through_client: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.through_client.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def uploader(transport: httpx.BaseTransport | None = None, *, failures: int = 8
             ) -> HttpUploader:
    return HttpUploader(device_id="dev", identity=KEY, now=lambda: 1_700_000_000.0,
                        transport=transport,
                        limits=UploadLimits(chunk_bytes=4000, max_failures=failures,
                                            backoff_initial_s=0.01, timeout_s=10))


KEY = Ed25519PrivateKey.generate()


def test_the_uploader_puts_a_clip_through_its_transport_not_httpx_client(
    received: tuple[Received, str], tmp_path: Path
) -> None:
    """Over plain HTTP a clip's PUTs go to `SendfileTransport.send_file` directly, not
    through httpx's client; the manifest still does."""
    got, url = received
    data = os.urandom(10_000)
    (tmp_path / "clip.age").write_bytes(data)
    spy = Spy()
    sender = uploader(spy)
    try:
        assert sender.upload_file(upload=f"{url}/v1/evidence/j", jti="j", clip_id="c",
                                  path=tmp_path / "clip.age") == len(data)
        sender.upload_manifest(upload=f"{url}/v1/evidence/j", jti="j", manifest=b"{}")
    finally:
        sender.close()
    assert b"".join(got.bodies) == data
    assert len(got.bodies) == 3  # chunks of 4000
    assert spy.through_client == ["POST /v1/evidence/j/manifest"]


class Capture:
    """A bare HTTP/1.1 peer that keeps each request's head as it came on the wire."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as stream:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                self.heads.append(head)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                stream.read(length)
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


def test_a_put_straight_through_the_transport_has_the_bytes_httpx_sends(
    tmp_path: Path
) -> None:
    """The same PUT (same key, same clock: the same signature) by the uploader's own
    path and by httpx's transport, streaming the file: the request heads are equal,
    byte for byte (request line, Host, httpx's headers and ours, in order)."""
    (tmp_path / "clip.age").write_bytes(b"s" * 3000)
    capture = Capture()
    try:
        for transport in (None, httpx.HTTPTransport()):
            sender = uploader(transport)
            try:
                sender.upload_file(upload=f"{capture.url}/v1/evidence/j", jti="j",
                                   clip_id="c", path=tmp_path / "clip.age")
            finally:
                sender.close()
    finally:
        capture.listener.close()
    direct, through_httpx = capture.heads
    assert direct == through_httpx
    assert direct.startswith(b"PUT /v1/evidence/j/c?offset=0 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nUser-Agent: python-httpx/" in direct
    assert direct.endswith(b"\r\nContent-Length: 3000\r\n\r\n")


def test_a_refused_connection_is_retried_as_httpx_connect_error(tmp_path: Path) -> None:
    (tmp_path / "clip.age").write_bytes(b"z" * 10)
    sender = uploader(failures=2)
    try:
        with pytest.raises(UploadFailed, match=r"gave up after 2 failures: .*ConnectError"):
            sender.upload_file(upload="http://127.0.0.1:9/v1/evidence/j", jti="j",
                               clip_id="c", path=tmp_path / "clip.age")
    finally:
        sender.close()
