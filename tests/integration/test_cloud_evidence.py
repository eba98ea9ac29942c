"""Evidence custody over real HTTP: resumable signed uploads, manifest checks, and
downloads for the requesting agency only.

The device side is simulated with the device's enrolled identity key and the
protocol's request signing and manifest code; the "clips" are real age files sealed
to the agency's recipient, which the agency opens after download.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from cloud_stub.errors import StoreError
from cloud_stub.store.models import CustodyRecord, Token
from protocol.manifest import EvidenceManifest, ManifestClip, sign_manifest
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal


@dataclass
class Released:
    agency: Principal
    device: DeviceSigner
    request_id: str
    jti: str
    upload: str
    window_start: datetime
    window_end: datetime


def release(cloud: CloudServer, agency: Principal | None = None) -> Released:
    agency = agency or cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    device = cloud.enroll()
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    world = cloud.world(agency, device.device_id)
    request_id = cloud.submit(agency, world.warrant(device_ids=[device.device_id])).json()["id"]
    view = cloud.http.post(f"/v1/requests/{request_id}/approve",
                           json={"reason": "Warrant verified with the issuing court."},
                           headers=reviewer.headers).json()
    assert view["status"] == "released", view
    jti = view["tokens"][0]["jti"]
    with cloud.service.store.transaction() as session:
        token = session.get(Token, jti)
        assert token is not None
        start, end = token.window_start, token.window_end
    return Released(agency, device, request_id, jti, f"{cloud.url}/v1/evidence/{jti}",
                    start, end)


def sealed_clip(recipient: str, size: int = 50_000) -> bytes:
    plain = bytes(range(256)) * (size // 256 + 1)
    sealed: bytes = pyrage.encrypt(plain[:size], [pyrage.x25519.Recipient.from_str(recipient)])
    return sealed


def device_call(cloud: CloudServer, r: Released, method: str, url: str, body: bytes = b"",
                *, signer: DeviceSigner | None = None, jti: str | None = None,
                timestamp: int | None = None) -> httpx.Response:
    signer = signer or r.device
    headers = signer.headers(method, url, jti or r.jti, body, timestamp=timestamp)
    return cloud.http.request(method, url, content=body, headers=headers)


def manifest_for(r: Released, clips: list[tuple[str, bytes]], *,
                 key: Ed25519PrivateKey | None = None,
                 start: datetime | None = None) -> bytes:
    begin = start or r.window_start + timedelta(hours=1)
    entries = tuple(
        ManifestClip(clip_id=cid, start=begin + timedelta(minutes=i),
                     end=begin + timedelta(minutes=i, seconds=30), bytes=len(data),
                     sha256=hashlib.sha256(data).hexdigest())
        for i, (cid, data) in enumerate(clips)
    )
    manifest = EvidenceManifest(jti=r.jti, device=r.device.device_id, clips=entries,
                                created=datetime.now(UTC).replace(microsecond=0))
    return sign_manifest(manifest, key or r.device.key)


def upload(cloud: CloudServer, r: Released, clip_id: str, data: bytes) -> None:
    url = f"{r.upload}/{clip_id}"
    half = len(data) // 2
    assert device_call(cloud, r, "PUT", f"{url}?offset=0", data[:half]).json() == {"offset": half}
    rest = device_call(cloud, r, "PUT", f"{url}?offset={half}", data[half:])
    assert rest.json() == {"offset": len(data)}


def test_upload_resume_manifest_and_download(cloud: CloudServer) -> None:
    r = release(cloud)
    assert r.agency.recipient is not None
    clip = sealed_clip(r.agency.recipient)
    url = f"{r.upload}/clip-0001"

    assert device_call(cloud, r, "GET", url).json() == {"offset": 0}
    first = device_call(cloud, r, "PUT", f"{url}?offset=0", clip[:20_000])
    assert first.status_code == 200
    assert first.json() == {"offset": 20_000}
    # The connection broke and the device resends from an old offset: told the truth.
    stale = device_call(cloud, r, "PUT", f"{url}?offset=0", clip[:20_000])
    assert stale.status_code == 409
    assert stale.json()["offset"] == 20_000  # where the device's uploader reads it
    assert stale.json()["error"]["code"] == "wrong_offset"
    assert device_call(cloud, r, "GET", url).json() == {"offset": 20_000}
    ahead = device_call(cloud, r, "PUT", f"{url}?offset=30000", clip[30_000:])
    assert ahead.status_code == 409
    rest = device_call(cloud, r, "PUT", f"{url}?offset=20000", clip[20_000:])
    assert rest.json() == {"offset": len(clip)}

    manifest = manifest_for(r, [("clip-0001", clip)])
    accepted = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 1
    closed = device_call(cloud, r, "PUT", f"{url}?offset={len(clip)}", b"more")
    assert closed.status_code == 409

    digest = hashlib.sha256(clip).hexdigest()
    stored = cloud.deployment.layout.evidence_dir / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == clip
    with cloud.service.store.transaction() as session:
        [record] = session.execute(
            select(CustodyRecord).where(CustodyRecord.jti == r.jti)).scalars()
        assert record.sha256 == digest
        assert record.device_id == r.device.device_id
        assert record.manifest_sha256 == hashlib.sha256(manifest).hexdigest()

    listing = cloud.http.get(f"/v1/requests/{r.request_id}/evidence", headers=r.agency.headers)
    assert listing.status_code == 200
    body = listing.json()
    assert [f["sha256"] for f in body["files"]] == [digest]
    assert json.loads(body["manifests"][r.jti]) == json.loads(manifest)
    download = cloud.http.get(body["files"][0]["download"], headers=r.agency.headers)
    assert download.status_code == 200
    assert download.content == clip
    assert r.agency.identity is not None
    identity = pyrage.x25519.Identity.from_str(r.agency.identity)
    assert len(pyrage.decrypt(download.content, [identity])) == 50_000
    view = cloud.http.get(f"/v1/requests/{r.request_id}", headers=r.agency.headers).json()
    assert view["status"] == "evidence_received"


def test_another_agency_never_sees_the_evidence(cloud: CloudServer) -> None:
    r = release(cloud)
    assert r.agency.recipient is not None
    clip = sealed_clip(r.agency.recipient, 4000)
    upload(cloud, r, "c1", clip)
    assert device_call(cloud, r, "POST", f"{r.upload}/manifest",
                       manifest_for(r, [("c1", clip)])).status_code == 200
    other = cloud.principal("agency")
    for path in (f"/v1/requests/{r.request_id}/evidence", f"/v1/evidence/{r.jti}/c1",
                 f"/v1/requests/{r.request_id}"):
        response = cloud.http.get(path, headers=other.headers)
        assert response.status_code == 404, path
        assert r.jti not in response.text
    reviewer = cloud.principal("reviewer", org="legal")
    assert cloud.http.get(f"/v1/evidence/{r.jti}/c1", headers=reviewer.headers).status_code == 403


def test_another_agency_gets_the_answer_of_a_file_that_does_not_exist(
    cloud: CloudServer
) -> None:
    """Byte for byte the same 404 as for a jti that was never issued: no request id, no
    hint that the file exists (docs/threat-model.md, a requester without legal process)."""
    r = release(cloud)
    assert r.agency.recipient is not None
    clip = sealed_clip(r.agency.recipient, 4000)
    upload(cloud, r, "c1", clip)
    assert device_call(cloud, r, "POST", f"{r.upload}/manifest",
                       manifest_for(r, [("c1", clip)])).status_code == 200
    other = cloud.principal("agency")
    theirs = cloud.http.get(f"/v1/evidence/{r.jti}/c1", headers=other.headers)
    missing = cloud.http.get(f"/v1/evidence/{uuid.uuid4()}/c1", headers=other.headers)
    assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)
    assert theirs.status_code == 404
    assert r.request_id not in theirs.text
    mine = cloud.http.get(f"/v1/evidence/{r.jti}/c1", headers=r.agency.headers)  # control
    assert (mine.status_code, mine.content) == (200, clip)


def test_device_requests_must_be_signed_by_the_enrolled_device(cloud: CloudServer) -> None:
    r = release(cloud)
    url = f"{r.upload}/c1"
    impostor = cloud.enroll("impostor")
    cases = {
        "another device's key and id": device_call(cloud, r, "GET", url, signer=impostor),
        "stale timestamp": device_call(cloud, r, "GET", url,
                                       timestamp=int(datetime.now(UTC).timestamp()) - 3600),
        "unknown jti": device_call(cloud, r, "GET", url,
                                   jti="00000000-0000-4000-8000-000000000000"),
    }
    for name, response in cases.items():
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "unauthenticated", name
    # A signature over other bytes than those sent.
    headers = r.device.headers("PUT", f"{url}?offset=0", r.jti, b"signed bytes")
    forged = cloud.http.put(f"{url}?offset=0", content=b"other bytes", headers=headers)
    assert forged.status_code == 401
    assert "does not verify" in forged.json()["error"]["message"]
    no_headers = cloud.http.put(f"{url}?offset=0", content=b"x")
    assert no_headers.status_code == 401


@pytest.mark.parametrize("problem", ["hash", "size", "missing", "window", "key", "jti"])
def test_a_manifest_that_does_not_match_is_refused(cloud: CloudServer, problem: str) -> None:
    r = release(cloud)
    assert r.agency.recipient is not None
    clip = sealed_clip(r.agency.recipient, 3000)
    upload(cloud, r, "c1", clip)
    listed = [("c1", clip)]
    key = None
    start = None
    expected = {"hash": "hash_mismatch", "size": "size_mismatch", "missing": "file_missing",
                "window": "clip_outside_window", "key": "bad_manifest",
                "jti": "manifest_mismatch"}[problem]
    if problem == "hash":
        listed = [("c1", clip[:-1] + bytes([clip[-1] ^ 1]))]
    elif problem == "size":
        listed = [("c1", clip + b"x")]
    elif problem == "missing":
        listed = [("c1", clip), ("c2", clip)]
    elif problem == "window":
        start = r.window_end + timedelta(hours=2)
    elif problem == "key":
        key = Ed25519PrivateKey.generate()
    manifest = manifest_for(r, listed, key=key, start=start)
    if problem == "jti":
        other = Released(r.agency, r.device, r.request_id,
                         "11111111-1111-4111-8111-111111111111", r.upload,
                         r.window_start, r.window_end)
        manifest = manifest_for(other, listed)
    response = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == expected
    # Nothing was accepted: the file is still staged and the token still open.
    assert device_call(cloud, r, "GET", f"{r.upload}/c1").json() == {"offset": len(clip)}


def test_the_token_caps_what_a_device_can_upload(cloud: CloudServer) -> None:
    r = release(cloud)
    with cloud.service.store.transaction() as session:
        token = session.get(Token, r.jti)
        assert token is not None
        token.size_cap = 10_000
    assert device_call(cloud, r, "PUT", f"{r.upload}/a?offset=0", b"x" * 8000).status_code == 200
    over = device_call(cloud, r, "PUT", f"{r.upload}/b?offset=0", b"y" * 4000)
    assert over.status_code == 413
    assert over.json()["error"]["code"] == "token_size_cap"
    assert "10000" in over.json()["error"]["message"]
    assert device_call(cloud, r, "GET", f"{r.upload}/b").json() == {"offset": 0}


def test_clip_ids_cannot_escape_the_staging_directory(cloud: CloudServer) -> None:
    r = release(cloud)
    for clip_id in ("..%2F..%2Fescape", ".hidden", "a..b"):
        response = device_call(cloud, r, "PUT", f"{r.upload}/{clip_id}?offset=0", b"x")
        assert response.status_code in (400, 404), clip_id
    assert not (cloud.deployment.layout.evidence_dir / "escape.part").exists()


def test_identical_clips_share_one_stored_file_with_a_custody_record_each(
    cloud: CloudServer
) -> None:
    """Content addressing across clips and tokens: two clips of one manifest with the same
    bytes, and a later token's clip with those bytes again, are one file on disk, while
    every clip keeps its own custody record; an empty manifest is accepted with none."""
    first = release(cloud)
    assert first.agency.recipient is not None
    clip = sealed_clip(first.agency.recipient)
    other = sealed_clip(first.agency.recipient, size=30_000)
    for clip_id, data in (("clip-a", clip), ("clip-b", clip), ("clip-c", other)):
        upload(cloud, first, clip_id, data)
    manifest = manifest_for(first, [("clip-a", clip), ("clip-b", clip), ("clip-c", other)])
    accepted = device_call(cloud, first, "POST", f"{first.upload}/manifest", manifest)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 3

    second = release(cloud, first.agency)
    upload(cloud, second, "clip-z", clip)
    manifest = manifest_for(second, [("clip-z", clip)])
    assert device_call(cloud, second, "POST", f"{second.upload}/manifest",
                       manifest).status_code == 200

    digest = hashlib.sha256(clip).hexdigest()
    evidence = cloud.deployment.layout.evidence_dir  # shared by the session's tests
    for data in (clip, other):
        name = hashlib.sha256(data).hexdigest()
        assert (evidence / "sha256" / name[:2] / name).read_bytes() == data
    for r in (first, second):  # every staged copy was moved or dropped
        assert not (evidence / "staging" / r.jti).exists()
    with cloud.service.store.transaction() as session:
        records = session.execute(select(CustodyRecord)).scalars().all()
        by_clip = {(r.jti, r.clip_id): r.sha256 for r in records}
    assert by_clip == {(first.jti, "clip-a"): digest, (first.jti, "clip-b"): digest,
                       (first.jti, "clip-c"): hashlib.sha256(other).hexdigest(),
                       (second.jti, "clip-z"): digest}

    third = release(cloud, first.agency)
    empty = device_call(cloud, third, "POST", f"{third.upload}/manifest",
                        manifest_for(third, []))
    assert empty.status_code == 200, empty.text
    assert empty.json()["accepted"] == 0
    listing = cloud.http.get(f"/v1/requests/{first.request_id}/evidence",
                             headers=first.agency.headers).json()
    assert {f["clip_id"] for f in listing["files"]} == {"clip-a", "clip-b", "clip-c"}


def test_an_acceptance_whose_store_commit_fails_can_be_retried(
    cloud: CloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails inside the acceptance's transaction (after the files got their
    content addresses): the device is told to retry (5xx), nothing is recorded, the staged
    upload is intact, and the same manifest posted again is accepted. A late PUT after
    the acceptance is refused and leaves the stored file as it was."""
    r = release(cloud)
    assert r.agency.recipient is not None
    clip = sealed_clip(r.agency.recipient)
    upload(cloud, r, "clip-0001", clip)
    manifest = manifest_for(r, [("clip-0001", clip)])
    audit = cloud.service.core.audit
    real_append = audit.append
    failures: list[object] = []

    def failing_append(*args: object, **kwargs: object) -> object:
        if not failures:
            failures.append(kwargs.get("action"))
            raise StoreError("store operation failed: disk I/O error (injected)")
        return real_append(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audit, "append", failing_append)
    refused = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest)
    assert failures == ["evidence.accepted"]
    assert refused.status_code >= 500, refused.text
    with cloud.service.store.transaction() as session:
        assert session.execute(select(CustodyRecord).where(
            CustodyRecord.jti == r.jti)).first() is None
    staged = cloud.deployment.layout.evidence_dir / "staging" / r.jti / "clip-0001.part"
    assert staged.read_bytes() == clip

    accepted = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest)
    assert accepted.status_code == 200, accepted.text
    assert not staged.exists()
    late = device_call(cloud, r, "PUT", f"{r.upload}/clip-0001?offset={len(clip)}", b"late")
    assert late.status_code == 409
    digest = hashlib.sha256(clip).hexdigest()
    stored = cloud.deployment.layout.evidence_dir / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == clip
    listing = cloud.http.get(f"/v1/requests/{r.request_id}/evidence",
                             headers=r.agency.headers).json()
    assert [f["sha256"] for f in listing["files"]] == [digest]
