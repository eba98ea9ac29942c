"""A release the cloud accepted stays a release, whatever the device heard of it.

The device's real `ReleaseService` (handler, job runner, sealed store, `HttpUploader`)
executes a token the real cloud stub issued, against the cloud's evidence endpoint over
real HTTP. Once the cloud accepted a manifest for a token it refuses any further PUT or
manifest for it with 409 ``closed``; only this device's identity key, signing for this
jti, can have closed it. So:

- the manifest is accepted and its reply lost on the way back (`LosingTransport` lets
  the request reach the cloud, then raises the connection error a reset would): the
  retry of the same bytes gets the first acceptance's answer, the job ends `uploaded`
  with its clips, the owner notice is queued, and the cloud holds one custody set;
- the agent stops after the cloud accepted the manifest and before the job was marked
  finished: on restart the job runs again, and the cloud's 409 ``closed`` tells it the
  release happened (same result, no second custody set);
- controls: a 409 with another code still fails the job, and without the fault the
  cloud sees exactly one manifest POST (the loss is what makes the second).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.services.device_events import Result
from cloud_stub.services.escrow import EpochEscrow
from cloud_stub.store.models import AuditRow, CustodyRecord, Manifest, Request, Token
from device.release.jobs import IMMEDIATE
from device.release.service import ReleaseService
from device.release.uploader import HttpUploader, UploadLimits
from device.vault.index import ClipRecord
from protocol.messages import parse_escrow
from protocol.timefmt import format_time
from tests.fixtures.cloud import CloudServer
from tests.fixtures.release import DeviceRig, identity_key, run_chores


@dataclass
class Issued:
    """A token the cloud issued for the rig's device, and what it covers."""

    request_id: str
    jti: str
    token: bytes
    clip: ClipRecord


def issue(cloud: CloudServer, rig: DeviceRig) -> Issued:
    """Record a clip, escrow the rig's epoch keys with the cloud (as the MQTT intake
    does), and have a warrant for its window approved; the token is the one the cloud
    signed and would publish."""
    cloud.service.core.sync_devices()
    now = rig.clock.now()
    clip = rig.record(now - timedelta(hours=8), 5)
    for item in rig.store.escrow_outbox.pending():
        message = parse_escrow(item.payload)
        cloud.service.events.escrow_received(rig.device_id, EpochEscrow(
            device_id=message.device, epoch_id=message.epoch, start=message.start,
            end=message.end, recipient=message.recipient, sealed_b64=message.sealed,
        ))
    agency = cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    world = cloud.world(agency, rig.device_id)
    window = {"start": format_time(clip.start - timedelta(minutes=5)),
              "end": format_time(clip.start + timedelta(minutes=5))}
    submitted = cloud.submit(agency, world.warrant(device_ids=[rig.device_id], window=window))
    assert submitted.status_code in (200, 201), submitted.text
    request_id = submitted.json()["id"]
    approved = cloud.http.post(f"/v1/requests/{request_id}/approve",
                               json={"reason": "Warrant verified with the issuing court."},
                               headers=reviewer.headers).json()
    assert approved["status"] == "released", approved
    jti = approved["tokens"][0]["jti"]
    with cloud.service.store.read() as session:
        token = session.get(Token, jti)
        assert token is not None
        jws = token.jws.encode()
    rig.clock.set(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))
    return Issued(request_id, jti, jws, clip)


class LosingTransport(httpx.BaseTransport):
    """Real HTTP, except that the answers to the first `lose` requests whose path ends
    with `suffix` are lost after the cloud produced them (a reset on the way back)."""

    def __init__(self, suffix: str, lose: int = 1) -> None:
        self._inner = httpx.HTTPTransport()
        self.suffix = suffix
        self.lose = lose
        self.lost: list[int] = []  # the status codes of the answers thrown away
        self.sent: list[tuple[str, str, int]] = []
        self.problems: list[str] = []  # the error codes of the cloud's refusals

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        self.sent.append((request.method, request.url.path, response.status_code))
        if response.status_code >= 400:
            self.problems.append(response.json()["error"]["code"])
        if self.lose and request.url.path.endswith(self.suffix):
            self.lose -= 1
            self.lost.append(response.status_code)
            response.close()
            raise httpx.ReadError("connection reset by peer (injected)", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


def make_uploader(rig: DeviceRig, transport: httpx.BaseTransport | None = None
                  ) -> HttpUploader:
    return HttpUploader(
        device_id=rig.device_id,
        identity=identity_key(rig),
        limits=UploadLimits(backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=10),
        transport=transport,
    )


@pytest.fixture
def services() -> Iterator[list[ReleaseService]]:
    started: list[ReleaseService] = []
    yield started
    for service in started:
        service.stop()


def _outbox(service: ReleaseService) -> dict[str, list[dict[str, Any]]]:
    """The queued messages by topic leaf (owner notices included, whenever they are due)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in service.jobs.due(IMMEDIATE + timedelta(days=365 * 200)):
        out.setdefault(item.topic.rsplit("/", 1)[-1], []).append(json.loads(item.payload))
    return out


def _events(service: ReleaseService, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in service.layout.audit_log.read_text().splitlines()]
    return [line["data"] for line in lines if line["event"] == event]


def _custody(cloud: CloudServer, jti: str) -> list[tuple[str, str, str]]:
    with cloud.service.store.read() as session:
        return [(r.clip_id, r.sha256, r.manifest_sha256) for r in session.execute(
            select(CustodyRecord).where(CustodyRecord.jti == jti)).scalars()]


def _cloud_audit(cloud: CloudServer, jti: str) -> list[str]:
    with cloud.service.store.read() as session:
        return [e.action for e in session.execute(
            select(AuditRow).where(AuditRow.subject == f"token:{jti}")
            .order_by(AuditRow.seq)).scalars()]


def _run_to_end(service: ReleaseService) -> None:
    for _ in range(10):  # a pass that hit a transport failure is retried on the next
        if not service.jobs.running_jobs():
            return
        run_chores(service)
        service._retry_at.clear()  # no waiting between passes in this test
    assert service.jobs.running_jobs() == []


def _assert_uploaded(service: ReleaseService, cloud: CloudServer, issued: Issued) -> None:
    job = service.jobs.job(issued.jti)
    assert job is not None
    assert job.state == "done", (job.state, job.result)
    queued = _outbox(service)
    [result] = [r for r in queued.get("result", []) if r["jti"] == issued.jti]
    assert (result["status"], result["clips"]) == ("uploaded", [issued.clip.id])
    [notice] = [n for n in queued.get("notice", []) if n["jti"] == issued.jti]
    assert notice["clips"] == [issued.clip.id]
    with cloud.service.store.read() as session:
        [manifest] = session.execute(select(Manifest).where(Manifest.jti == issued.jti)
                                     ).scalars().all()
        manifest_sha = manifest.sha256
        request = session.get(Request, issued.request_id)
        assert request is not None
        assert request.status == "evidence_received"
    [(clip_id, _, custody_manifest)] = _custody(cloud, issued.jti)  # one custody set
    assert (clip_id, custody_manifest) == (issued.clip.id, manifest_sha)
    assert _cloud_audit(cloud, issued.jti).count("evidence.accepted") == 1


def test_without_a_fault_one_manifest_is_posted_and_the_job_ends_uploaded(
    cloud: CloudServer, release_rig: DeviceRig, services: list[ReleaseService]
) -> None:
    """Positive control for the harness: the cloud's token is released over real HTTP,
    with one manifest POST and no acceptance learnt from a 409."""
    issued = issue(cloud, release_rig)
    transport = LosingTransport("/manifest", lose=0)
    service = release_rig.service(uploader=make_uploader(release_rig, transport))
    services.append(service)
    assert service.handler.handle(issued.token).status == "accepted"
    _run_to_end(service)
    _assert_uploaded(service, cloud, issued)
    assert [s for s in transport.sent if s[1].endswith("/manifest")] == [
        ("POST", f"/v1/evidence/{issued.jti}/manifest", 200)
    ]
    assert _events(service, "accepted_by_cloud") == []


def test_a_lost_acceptance_reply_is_answered_again_and_the_job_ends_uploaded(
    cloud: CloudServer, release_rig: DeviceRig, services: list[ReleaseService]
) -> None:
    issued = issue(cloud, release_rig)
    transport = LosingTransport("/manifest")
    service = release_rig.service(uploader=make_uploader(release_rig, transport))
    services.append(service)
    assert service.handler.handle(issued.token).status == "accepted"
    _run_to_end(service)
    assert transport.lost == [200]  # the cloud accepted; the device never heard it
    posts = [s for s in transport.sent if s[1].endswith("/manifest")]
    assert posts == [("POST", f"/v1/evidence/{issued.jti}/manifest", 200)] * 2
    _assert_uploaded(service, cloud, issued)
    assert _events(service, "job_failed") == []


class Killed(BaseException):
    """The agent dies here (nothing below it runs, nothing catches it)."""


@pytest.mark.parametrize("restart_after_s", [0, 5], ids=["same-manifest", "new-manifest"])
def test_an_agent_stopped_after_the_acceptance_finishes_the_job_as_uploaded_on_restart(
    cloud: CloudServer, release_rig: DeviceRig, services: list[ReleaseService],
    monkeypatch: pytest.MonkeyPatch, restart_after_s: int,
) -> None:
    """The cloud accepted the manifest and the agent stopped before the job's end was
    written. On restart the job runs again from its recorded state: no re-seal (the
    re-sealed files and their sha256 are reused) and no PUT (every clip is recorded as
    uploaded), and its manifest is posted again. Restarted within the same second, the
    manifest is the same bytes and the cloud answers it as accepted (200); later, its
    `created` differs, the cloud answers 409 ``closed``, and the device learns from it
    that its evidence was accepted. Either way the job ends `uploaded` with the owner
    notice, and the cloud holds one custody set."""
    rig = release_rig
    issued = issue(cloud, rig)
    service = rig.service(uploader=make_uploader(rig))
    services.append(service)
    assert service.handler.handle(issued.token).status == "accepted"

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed

    monkeypatch.setattr(service.jobs, "finish_job", killed)
    with pytest.raises(Killed):
        run_chores(service)
    job = service.jobs.job(issued.jti)
    assert job is not None
    assert job.state == "running"
    sealed = {c.clip_id: (c.state, c.sha256) for c in job.clips}
    assert sealed == {issued.clip.id: ("uploaded", sealed[issued.clip.id][1])}
    assert [e["jti"] for e in _events(service, "manifest")] == [issued.jti]
    with cloud.service.store.read() as session:  # accepted before the agent died
        assert session.get(Manifest, issued.jti) is not None
    service.stop()

    rig.clock.advance(timedelta(seconds=restart_after_s))
    transport = LosingTransport("/manifest", lose=0)
    service = rig.service(uploader=make_uploader(rig, transport))  # the agent restarts
    services.append(service)
    _run_to_end(service)
    _assert_uploaded(service, cloud, issued)
    job = service.jobs.job(issued.jti)
    assert job is not None
    assert {c.clip_id: (c.state, c.sha256) for c in job.clips} == sealed
    assert [s[0] for s in transport.sent] == ["POST"]  # no PUT, no GET: the manifest only
    assert _events(service, "job_failed") == []
    assert [e["clip"] for e in _events(service, "resealed")] == [issued.clip.id]  # once
    learnt = _events(service, "accepted_by_cloud")
    if restart_after_s:
        assert transport.sent[0][2] == 409
        assert [(e["jti"], e["heard_on"], e["clips"]) for e in learnt] == [
            (issued.jti, "manifest", [issued.clip.id])
        ]
    else:
        assert transport.sent[0][2] == 200
        assert learnt == []


def test_a_conflict_with_another_code_still_fails_the_job(
    cloud: CloudServer, release_rig: DeviceRig, services: list[ReleaseService]
) -> None:
    """Control: the cloud holds the token as rejected by the device (no manifest was
    accepted), and the job's first PUT is refused with 409 ``token_rejected``. That is
    no acceptance: the job fails, no owner notice is queued."""
    rig = release_rig
    issued = issue(cloud, rig)
    transport = LosingTransport("/manifest", lose=0)
    service = rig.service(uploader=make_uploader(rig, transport))
    services.append(service)
    assert service.handler.handle(issued.token).status == "accepted"
    assert cloud.service.events.result_received(rig.device_id, Result(
        jti=issued.jti, status=TokenStatus.REJECTED, reason="replayed", detail="", clips=()))
    _run_to_end(service)
    job = service.jobs.job(issued.jti)
    assert job is not None
    assert job.state == "failed"
    queued = _outbox(service)
    [result] = queued["result"]
    assert (result["status"], result["reason"]) == ("rejected", "upload_refused")
    assert transport.problems == ["token_rejected"]
    assert [(m, s) for m, _, s in transport.sent] == [("PUT", 409)]
    assert "notice" not in queued
    assert _events(service, "accepted_by_cloud") == []
    with cloud.service.store.read() as session:
        assert session.get(Manifest, issued.jti) is None


def test_nothing_is_uploaded_under_a_superseded_token(
    cloud: CloudServer, release_rig: DeviceRig, services: list[ReleaseService]
) -> None:
    """A token a reviewer re-issued after the device refused it (`superseded`) takes no
    upload either: 409 ``token_rejected``, the job fails, no notice."""
    rig = release_rig
    issued = issue(cloud, rig)
    transport = LosingTransport("/manifest", lose=0)
    service = rig.service(uploader=make_uploader(rig, transport))
    services.append(service)
    assert service.handler.handle(issued.token).status == "accepted"
    with cloud.service.store.transaction() as session:
        token = session.get(Token, issued.jti)
        assert token is not None
        token.status = "superseded"
    _run_to_end(service)
    job = service.jobs.job(issued.jti)
    assert job is not None
    assert job.state == "failed"
    assert transport.problems == ["token_rejected"]
    assert "notice" not in _outbox(service)
