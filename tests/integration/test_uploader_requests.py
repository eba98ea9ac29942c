"""The device's `HttpUploader` against the real cloud stub over HTTP: which requests it
makes, and what the cloud records of the upload.

Every request the uploader sends is recorded: with httpx event hooks on its client,
and a clip's PUTs, which bypass the client, by a spy on its sendfile transport. A fresh
clip goes up with PUTs only, from offset 0, without asking for the resume point; a clip
the cloud already holds part of costs one refused PUT whose 409 names the cloud's
offset, and the upload continues from there; after a connection cut mid-upload
(`CuttingProxy`) the retry first asks the cloud for its offset (the GET that the first
attempt skipped; also the positive control that the recorder sees GETs). The cloud's
custody record, read through the agency's listing, has ``upload_started_at <=
received_at <= accepted_at``, with ``received_at`` the staging file's last write
clamped to that interval; the ``uploads`` row is written at the first bytes and closed
with the manifest.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cloud_stub.store.models import Upload
from device.release.errors import UploadFailed
from device.release.sendfile import FileBody
from device.release.uploader import HttpUploader, UploadLimits
from tests.fixtures.cloud import CloudServer
from tests.fixtures.release import CuttingProxy
from tests.integration.test_cloud_evidence import (
    Released,
    device_call,
    manifest_for,
    release,
    sealed_clip,
)

CHUNK = 16 * 1024
CLIP_PLAIN = 50_000  # sealed, a little more: four PUTs of CHUNK (0, 16384, 32768, 49152)
CLIP_ID = "clip-0001"


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    offset: int | None  # the PUT's ?offset=
    status: int | None  # None: no answer came (the connection broke)


class Recorder:
    """Every request an uploader sends, with the status of its answer (if any): through
    its httpx client (event hooks) and, for a clip's PUTs, straight through its sendfile
    transport (a spy on `SendfileTransport.send_file`)."""

    def __init__(self, uploader: HttpUploader) -> None:
        self.sent: list[Sent] = []
        self._open: dict[int, int] = {}
        uploader._client.event_hooks = {"request": [self._request],
                                        "response": [self._response]}
        transport = uploader._sendfile
        assert transport is not None
        send_file = transport.send_file

        def spy(method: str, url: httpx.URL, headers: Sequence[tuple[bytes, bytes]],
                body: FileBody) -> tuple[int, list[tuple[str, str]], bytes]:
            index = self._add(method, url)
            answer = send_file(method, url, headers, body)
            self._answered(index, answer[0])
            return answer

        transport.send_file = spy  # type: ignore[method-assign]

    def _add(self, method: str, url: httpx.URL) -> int:
        raw = url.params.get("offset")
        self.sent.append(Sent(method, url.path, None if raw is None else int(raw), None))
        return len(self.sent) - 1

    def _answered(self, index: int, status: int) -> None:
        entry = self.sent[index]
        self.sent[index] = Sent(entry.method, entry.path, entry.offset, status)

    def _request(self, request: httpx.Request) -> None:
        self._open[id(request)] = self._add(request.method, request.url)

    def _response(self, response: httpx.Response) -> None:
        self._answered(self._open.pop(id(response.request)), response.status_code)

    def calls(self) -> list[tuple[str, int | None, int | None]]:
        return [(s.method, s.offset, s.status) for s in self.sent]


def make_uploader(r: Released) -> HttpUploader:
    return HttpUploader(
        device_id=r.device.device_id,
        identity=r.device.key,
        limits=UploadLimits(chunk_bytes=CHUNK, read_bytes=4096, backoff_initial_s=0.01,
                            backoff_max_s=0.05, timeout_s=10),
    )


@pytest.fixture
def released(cloud: CloudServer) -> Released:
    return release(cloud)


@pytest.fixture
def clip(released: Released, tmp_path: Path) -> bytes:
    assert released.agency.recipient is not None
    data = sealed_clip(released.agency.recipient, CLIP_PLAIN)
    assert 3 * CHUNK < len(data) < 4 * CHUNK
    (tmp_path / f"{CLIP_ID}.age").write_bytes(data)
    return data


@pytest.fixture
def uploader(released: Released) -> Iterator[HttpUploader]:
    u = make_uploader(released)
    yield u
    u.close()


def clip_path(tmp_path: Path) -> Path:
    return tmp_path / f"{CLIP_ID}.age"


def accept_and_download(cloud: CloudServer, r: Released, uploader: HttpUploader,
                        data: bytes) -> dict[str, object]:
    """Post the manifest through the uploader; the agency's listing entry of the clip,
    after checking that its download is exactly `data`."""
    uploader.upload_manifest(upload=r.upload, jti=r.jti,
                             manifest=manifest_for(r, [(CLIP_ID, data)]))
    listing = cloud.http.get(f"/v1/requests/{r.request_id}/evidence",
                             headers=r.agency.headers)
    assert listing.status_code == 200, listing.text
    [entry] = listing.json()["files"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    download = cloud.http.get(entry["download"], headers=r.agency.headers)
    assert download.content == data
    result: dict[str, object] = entry
    return result


def put_offsets(start: int, size: int) -> list[int]:
    return list(range(start, size, CHUNK))


def test_a_fresh_clip_goes_up_with_puts_only(cloud: CloudServer, released: Released,
                                            clip: bytes, uploader: HttpUploader,
                                            tmp_path: Path) -> None:
    recorder = Recorder(uploader)
    held = uploader.upload_file(upload=released.upload, jti=released.jti, clip_id=CLIP_ID,
                                path=clip_path(tmp_path))
    assert held == len(clip)
    assert recorder.calls() == [("PUT", o, 200) for o in put_offsets(0, len(clip))]
    assert {s.path for s in recorder.sent} == {f"/v1/evidence/{released.jti}/{CLIP_ID}"}
    accept_and_download(cloud, released, uploader, clip)


def test_a_clip_the_cloud_holds_part_of_resumes_at_the_409s_offset(
    cloud: CloudServer, released: Released, clip: bytes, uploader: HttpUploader,
    tmp_path: Path
) -> None:
    """The device restarted after sending a prefix (not chunk-aligned): its first PUT
    from 0 is refused, and it continues at the cloud's offset, not at its own next
    chunk; the cloud ends up with exactly the clip."""
    prefix = 20_000
    url = f"{released.upload}/{CLIP_ID}"
    first = device_call(cloud, released, "PUT", f"{url}?offset=0", clip[:prefix])
    assert first.json() == {"offset": prefix}
    recorder = Recorder(uploader)
    uploader.upload_file(upload=released.upload, jti=released.jti, clip_id=CLIP_ID,
                         path=clip_path(tmp_path))
    assert recorder.calls() == [("PUT", 0, 409)] + [
        ("PUT", o, 200) for o in put_offsets(prefix, len(clip))
    ]
    accept_and_download(cloud, released, uploader, clip)


def test_after_a_cut_connection_the_retry_asks_for_the_offset_first(
    cloud: CloudServer, released: Released, clip: bytes, tmp_path: Path
) -> None:
    """The connection breaks in the middle of the second PUT's body (the first PUT was
    acknowledged): the retry begins with a GET, and the PUTs continue at its answer."""
    port = int(cloud.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut_after=CHUNK + CHUNK // 2, cuts=1)
    proxy.start()
    uploader = make_uploader(released)
    try:
        recorder = Recorder(uploader)
        upload = f"http://127.0.0.1:{proxy.port}/v1/evidence/{released.jti}"
        uploader.upload_file(upload=upload, jti=released.jti, clip_id=CLIP_ID,
                             path=clip_path(tmp_path))
        assert proxy.cut_done == 1
        calls = recorder.calls()
        assert calls[:2] == [("PUT", 0, 200), ("PUT", CHUNK, None)], calls
        assert calls[2] == ("GET", None, 200), calls
        assert calls[3:] == [("PUT", o, 200) for o in put_offsets(CHUNK, len(clip))], calls
        accept_and_download(cloud, released, uploader, clip)
    finally:
        uploader.close()
        proxy.stop()


def _ts(value: object) -> datetime:
    assert isinstance(value, str)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("last_write", ["as-written", "before-start", "after-acceptance"])
def test_the_custody_times_are_ordered_and_received_is_the_last_write(
    cloud: CloudServer, released: Released, clip: bytes, tmp_path: Path, last_write: str
) -> None:
    """The service clock runs 120 s behind while the clip is uploaded and 120 s ahead when
    the manifest is accepted (the device signs with the same clock), so the three times
    differ: ``received_at`` is the staging file's last write (real time), and a last
    write outside [start, acceptance] (set with os.utime) is clamped to its bounds."""
    shift = {"s": -120}
    real_clock = cloud.service.core.clock

    def shifted() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=shift["s"])

    cloud.service.core.clock = shifted
    uploader = HttpUploader(
        device_id=released.device.device_id, identity=released.device.key,
        limits=UploadLimits(chunk_bytes=CHUNK, backoff_initial_s=0.01, timeout_s=10),
        now=lambda: shifted().timestamp(),
    )
    try:
        before = datetime.now(UTC).replace(microsecond=0)
        uploader.upload_file(upload=released.upload, jti=released.jti, clip_id=CLIP_ID,
                             path=clip_path(tmp_path))
        after = datetime.now(UTC)
        staged = cloud.service.core.files.staging_path(released.jti, CLIP_ID)
        if last_write == "before-start":
            os.utime(staged, (staged.stat().st_atime, (before - timedelta(hours=1)).timestamp()))
        elif last_write == "after-acceptance":
            os.utime(staged, (staged.stat().st_atime, (after + timedelta(hours=1)).timestamp()))
        shift["s"] = 120
        entry = accept_and_download(cloud, released, uploader, clip)
    finally:
        uploader.close()
        cloud.service.core.clock = real_clock
    started, received, accepted = (_ts(entry[k]) for k in
                                   ("upload_started_at", "received_at", "accepted_at"))
    assert started <= received <= accepted, entry
    assert started <= after - timedelta(seconds=120)  # the clock while uploading
    assert accepted >= after.replace(microsecond=0) + timedelta(seconds=120)
    if last_write == "as-written":
        assert started < received < accepted, entry
        assert before <= received <= after, (entry, before, after)
    elif last_write == "before-start":
        assert received == started
    else:
        assert received == accepted


def test_the_upload_row_is_written_before_the_first_bytes_and_closed_with_the_manifest(
    cloud: CloudServer, released: Released, clip: bytes, uploader: HttpUploader,
    tmp_path: Path
) -> None:
    url = f"{released.upload}/{CLIP_ID}"

    def row() -> tuple[int, datetime] | None:
        with cloud.service.store.transaction() as session:
            upload = session.get(Upload, (released.jti, CLIP_ID))
            return None if upload is None else (upload.received, upload.started_at)

    assert row() is None
    assert device_call(cloud, released, "PUT", f"{url}?offset=0", clip[:1000]).status_code == 200
    first = row()
    assert first is not None
    assert first[0] == 0  # written before the bytes: the start, not the progress
    assert device_call(cloud, released, "PUT", f"{url}?offset=1000",
                       clip[1000:5000]).status_code == 200
    assert row() == first  # later PUTs leave the row alone
    uploader.upload_file(upload=released.upload, jti=released.jti, clip_id=CLIP_ID,
                         path=clip_path(tmp_path))
    assert row() == first
    accept_and_download(cloud, released, uploader, clip)
    assert row() == (len(clip), first[1])  # closed with the manifest: the size received


def test_an_answer_too_long_for_the_endpoint_is_not_read_into_memory(
    released: Released, tmp_path: Path
) -> None:
    """A peer in the cloud's place answers every request with 8 MiB: the uploader reads
    no more than its cap of each answer (over httpx for the manifest, over sendfile for a
    clip's PUT) and gives up after its bounded retries, naming the cause."""
    answers: list[int] = []

    class Flood(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _flood(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answers.append(1)
            self.send_response(200)
            self.send_header("Content-Length", str(8 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(128):
                    self.wfile.write(b"{" * 65536)
            except OSError:
                pass  # the uploader stopped reading and closed

        do_PUT = do_POST = do_GET = _flood

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upload = f"http://127.0.0.1:{server.server_address[1]}/v1/evidence/{released.jti}"
    (tmp_path / "clip.age").write_bytes(b"sealed bytes")
    uploader = HttpUploader(
        device_id=released.device.device_id, identity=released.device.key,
        limits=UploadLimits(max_failures=2, backoff_initial_s=0.01, backoff_max_s=0.02,
                            timeout_s=10))
    try:
        with pytest.raises(UploadFailed, match="an answer of over"):
            uploader.upload_manifest(upload=upload, jti=released.jti, manifest=b"{}")
        with pytest.raises(UploadFailed, match="an answer of over"):
            uploader.upload_file(upload=upload, jti=released.jti, clip_id="clip",
                                 path=tmp_path / "clip.age")
    finally:
        uploader.close()
        server.shutdown()
        server.server_close()
    assert 4 <= len(answers) <= 6  # two attempts each (the PUT's retry may ask with a GET)
