"""The `Uploader` seam and its HTTP implementation (docs/architecture.md, "Evidence upload").

Every request is signed by the device identity key over
`protocol.request_signing.signing_input(...)`. A file is uploaded resumably in chunks
(`PUT {upload}/{clip_id}?offset=N`); a 409 carries the cloud's true offset and the
upload continues from there. The first attempt starts at offset 0 without asking (a
fresh clip needs no round trip; a clip the cloud already holds part of, after a device
restart, costs one refused chunk and its 409); after a failure the device asks the
cloud how many bytes it holds (`GET {upload}/{clip_id}`) before sending the rest. A
broken connection, a timeout or a 5xx is retried with exponential backoff, a bounded
number of times in a row (any progress resets the count). Other 4xx answers are final.
Then the signed manifest is posted.

A 409 whose problem code is ``closed`` (on a PUT or on the manifest) says the cloud has
already accepted a manifest for this token, and only a manifest signed with this device's
identity key for this jti can have been accepted: the device's own earlier attempt (whose
answer was lost, or whose agent stopped before it recorded the end). It raises
`EvidenceClosed`, which the runner takes as the release having happened; every other
409 without an offset, and every other 4xx, stays a final `UploadRefused`.

A chunk is never held in memory: it is hashed from the file for the signature (unless
it is the whole file and the caller passed the file's digest, which the re-seal took
as it wrote), then sent from the file again as the body with its `Content-Length`: by
sendfile(2) over plain HTTP (`device.release.sendfile`: the bytes do not pass through
Python), else in reads of `UploadLimits.read_bytes`; a worker's memory does not grow
with the chunk size. Over plain HTTP with the uploader's own transport such a PUT goes
straight to `SendfileTransport.send_file`, not through httpx's client: the same header
lines, httpx's errors, the answer read as the client reads it, and less CPU. Every
other request (the GET, the manifest, https, a transport a test injects) goes through
httpx's client.
The re-sealed file is the device's own and is not written while it is uploaded; a file
that comes up short between the two reads raises OSError.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.release.errors import UploadFailed, UploadRefused
from device.release.sendfile import MAX_ANSWER_BYTES, FileBody, SendfileTransport
from protocol.errors import RequestSignatureError
from protocol.request_signing import signed_headers

log = logging.getLogger(__name__)


class Uploader(Protocol):
    """Moves one re-sealed file, then the manifest, to the evidence endpoint."""

    def upload_file(self, *, upload: str, jti: str, clip_id: str, path: Path,
                    sha256: str | None = None) -> int:
        """Upload `path` completely; returns the number of bytes the cloud holds.
        `sha256` is the file's own digest when the caller knows it (the re-seal computed
        it): a request that carries the whole file is signed with it unread."""
        ...

    def upload_manifest(self, *, upload: str, jti: str, manifest: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class UploadLimits:
    """Bounds of one upload. Sizes in bytes, times in seconds."""

    chunk_bytes: int = 8 * 1024 * 1024  # one PUT, at most the cloud stub's 8 MiB cap
    read_bytes: int = 256 * 1024  # one read of a chunk: the memory a transfer holds
    max_failures: int = 8  # consecutive failed attempts before giving up
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    timeout_s: float = 30.0


class _Retryable(Exception):
    pass


CLOSED = "closed"  # the cloud's problem code: a manifest was accepted for the token


class EvidenceClosed(UploadRefused):
    """The cloud answered 409 ``closed``: it accepted a manifest for this token already
    (docs/protocol.md, "Evidence upload"). `where` names the request that heard it."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(409, detail)
        self.where = where


def _problem_code(response: Answer) -> str:
    """The ``error.code`` of the cloud's problem JSON, or "" when there is none."""
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else ""


def _read_capped(response: httpx.Response) -> bytes:
    """The answer's body, at most `MAX_ANSWER_BYTES` of it (the endpoint answers in a few
    hundred bytes). Raises httpx.RemoteProtocolError for a longer one."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise httpx.RemoteProtocolError(
                f"an answer of over {MAX_ANSWER_BYTES} bytes", request=response.request)
    return bytes(body)


_FRAMING = ("content-encoding", "content-length")  # of the body as sent, not as read


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer read whole: its status, its header lines but those of its framing, and
    its body decoded. `json()` and `text` read the body as httpx does."""

    status_code: int
    headers: list[tuple[str, str]]
    content: bytes

    def _as_httpx(self) -> httpx.Response:
        return httpx.Response(self.status_code, headers=self.headers, content=self.content)

    def json(self) -> Any:
        return self._as_httpx().json()

    @property
    def text(self) -> str:
        return self._as_httpx().text


def _answer_as_sent(status: int, headers: list[tuple[str, str]], content: bytes) -> Answer:
    """The `Answer` of a body as it came: decoded by its Content-Encoding as httpx's client
    decodes it. Raises httpx.DecodingError, or httpx.RemoteProtocolError when the decoded
    body is over `MAX_ANSWER_BYTES`."""
    kept = [(name, value) for name, value in headers if name.lower() not in _FRAMING]
    if any(name.lower() == "content-encoding" for name, _ in headers):
        content = httpx.Response(status, headers=headers, content=content).content
        if len(content) > MAX_ANSWER_BYTES:
            raise httpx.RemoteProtocolError(f"an answer of over {MAX_ANSWER_BYTES} bytes")
    return Answer(status, kept, content)


class HttpUploader:
    """httpx against the cloud stub's evidence endpoint.

    Raises EvidenceClosed for a 409 ``closed``, UploadRefused for another final 4xx,
    UploadFailed when the bounded retries are used up, and OSError when the local file
    cannot be read.
    """

    def __init__(
        self,
        *,
        device_id: str,
        identity: Ed25519PrivateKey,
        limits: UploadLimits = UploadLimits(),
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
        now: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces the uploader's own, a `SendfileTransport` over httpx's
        (tests put a faulty network under it)."""
        self._now = now
        self._device = device_id
        self._identity = identity
        self._limits = limits
        self._sleep = sleep
        self._stop = stop or threading.Event()
        if transport is None:
            transport = SendfileTransport(httpx.HTTPTransport(), timeout_s=limits.timeout_s)
        self._sendfile = transport if isinstance(transport, SendfileTransport) else None
        self._client = httpx.Client(timeout=limits.timeout_s, follow_redirects=False,
                                    transport=transport)

    def close(self) -> None:
        self._client.close()

    def _headers(self, method: str, url: str, jti: str, body_sha256: str) -> dict[str, str]:
        try:
            return signed_headers(
                self._identity,
                method=method,
                url=url,
                timestamp=int(self._now()),
                body_sha256=body_sha256,
                device=self._device,
                jti=jti,
            )
        except RequestSignatureError as exc:
            raise UploadRefused(0, f"cannot sign the request: {exc}") from exc

    def _request(self, method: str, url: str, jti: str, body: bytes = b"") -> Answer:
        return self._send(method, url, jti, hashlib.sha256(body).hexdigest(), body, len(body))

    def _send(self, method: str, url: str, jti: str, body_sha256: str,
              content: bytes | FileBody, length: int) -> Answer:
        headers = self._headers(method, url, jti, body_sha256)
        if length:
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(length)
        try:
            if isinstance(content, FileBody):
                target = httpx.URL(url)
                if (self._sendfile is not None and target.scheme == "http"
                        and not self._client.is_closed and not self._client.cookies):
                    answer = self._send_file(method, target, headers, content)
                else:
                    request = self._client.build_request(method, target, headers=headers)
                    request.stream = content  # as it is, for a transport to send by sendfile
                    answer = self._through_client(request)
            else:
                answer = self._through_client(
                    self._client.build_request(method, url, content=content, headers=headers))
        except httpx.HTTPError as exc:  # connection reset, timeout, protocol error
            raise _Retryable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _Retryable(f"{method} {url}: {answer.status_code}")
        return answer

    def _through_client(self, request: httpx.Request) -> Answer:
        response = self._client.send(request, stream=True)
        try:
            body = _read_capped(response)
        finally:
            response.close()
        return Answer(response.status_code, [
            (k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING
        ], body)  # decoded already

    def _send_file(self, method: str, url: httpx.URL, headers: dict[str, str],
                   body: FileBody) -> Answer:
        """The request straight through the sendfile transport, without httpx's client
        around it (docs/architecture.md, "Evidence upload"): the header lines are the
        ones the client builds (Host, the client's own unless ours name them, ours), and
        the answer is read as the client reads it (decoded, capped, its cookies kept;
        `_send` takes this path only while the client holds no cookie to send)."""
        ours = [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
        named = {name.lower() for name, _ in ours}
        lines = [(b"Host", url.netloc)] if b"host" not in named else []
        lines += [(name, value) for name, value in self._client.headers.raw
                  if name.lower() not in named]
        lines += ours
        assert self._sendfile is not None
        status, answer_headers, content = self._sendfile.send_file(method, url, lines, body)
        if any(name.lower() == "set-cookie" for name, _ in answer_headers):
            self._client.cookies.extract_cookies(httpx.Response(
                status, headers=answer_headers,
                request=httpx.Request(method, url, headers=lines)))
        return _answer_as_sent(status, answer_headers, content)

    def _offset_of(self, response: Answer) -> int:
        """The offset in `{"offset": N}` (also inside `{"error": {...}}`, a 409's shape)."""
        try:
            body: Any = response.json()
            if isinstance(body, dict) and "offset" not in body and "error" in body:
                body = body["error"]
            offset = body["offset"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UploadRefused(response.status_code, "answer carries no offset") from exc
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise UploadRefused(response.status_code, f"invalid offset {offset!r:.40}")
        return offset

    def _final(self, response: Answer, where: str) -> UploadRefused:
        if response.status_code == 409 and _problem_code(response) == CLOSED:
            return EvidenceClosed(where, response.text[:300])
        return UploadRefused(response.status_code, response.text[:300])

    def _with_retries(self, what: str, step: Callable[[], bool]) -> None:
        """Call `step` until it returns True; it returns False after progress."""
        failures = 0
        delay = self._limits.backoff_initial_s
        while True:
            if self._stop.is_set():
                raise UploadFailed(f"{what}: stopped")
            try:
                if step():
                    return
                failures = 0
                delay = self._limits.backoff_initial_s
            except _Retryable as exc:
                failures += 1
                if failures >= self._limits.max_failures:
                    raise UploadFailed(f"{what}: gave up after {failures} failures: {exc}") from exc
                log.info("%s: %s; retrying in %.1f s", what, exc, delay)
                if self._stop.wait(delay):
                    raise UploadFailed(f"{what}: stopped") from exc
                delay = min(delay * 2, self._limits.backoff_max_s)

    def _pieces(self, handle: BinaryIO, offset: int, length: int) -> Iterator[bytes]:
        """`length` bytes of `handle` from `offset`, in reads of at most `read_bytes`.
        Raises OSError when the file ends first."""
        handle.seek(offset)
        left = length
        while left:
            piece = handle.read(min(left, self._limits.read_bytes))
            if not piece:
                raise OSError(f"{getattr(handle, 'name', 'file')}: ended {left} bytes early")
            left -= len(piece)
            yield piece

    def _put_chunk(self, url: str, jti: str, handle: BinaryIO, offset: int, length: int,
                   known_sha256: str | None = None) -> Answer:
        """PUT bytes [offset, offset + length) of the file: hashed in one pass (unless
        the digest of exactly these bytes is known), streamed as the body in a second."""
        digest = known_sha256
        if digest is None:
            hasher = hashlib.sha256()
            for piece in self._pieces(handle, offset, length):
                hasher.update(piece)
            digest = hasher.hexdigest()
        body = FileBody(handle, offset, length, read_bytes=self._limits.read_bytes)
        return self._send("PUT", f"{url}?offset={offset}", jti, digest, body, length)

    def upload_file(self, *, upload: str, jti: str, clip_id: str, path: Path,
                    sha256: str | None = None) -> int:
        url = f"{upload.rstrip('/')}/{clip_id}"
        size = path.stat().st_size
        asked = False  # the first attempt starts at 0 unasked; a 409 names the true offset

        def step() -> bool:
            nonlocal asked
            offset = 0
            if asked:
                response = self._request("GET", url, jti)
                if response.status_code != 200:
                    raise self._final(response, clip_id)
                offset = self._offset_of(response)
                if offset > size:
                    raise UploadRefused(409, f"cloud holds {offset} bytes of a {size}-byte file")
            asked = True
            with path.open("rb") as handle:
                while offset < size:
                    length = min(self._limits.chunk_bytes, size - offset)
                    whole = sha256 if offset == 0 and length == size else None
                    response = self._put_chunk(url, jti, handle, offset, length, whole)
                    if response.status_code == 409:
                        if _problem_code(response) == CLOSED:
                            raise self._final(response, clip_id)
                        offset = self._offset_of(response)
                        if offset > size:
                            raise UploadRefused(409, f"cloud holds {offset} of {size} bytes")
                        continue
                    if response.status_code not in (200, 201, 204):
                        raise self._final(response, clip_id)
                    offset += length
            return True

        self._with_retries(f"upload of {clip_id}", step)
        return size

    def upload_manifest(self, *, upload: str, jti: str, manifest: bytes) -> None:
        url = f"{upload.rstrip('/')}/manifest"

        def step() -> bool:
            response = self._request("POST", url, jti, manifest)
            if response.status_code not in (200, 201, 204):
                raise self._final(response, "manifest")
            return True

        self._with_retries("manifest", step)
