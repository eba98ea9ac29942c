"""The accepted manifest, posted again, is answered as it was; anything else stays closed;
and a device's late `rejected` does not erase received evidence. Real HTTP against the
cloud stub, with the device simulated by its enrolled identity key.

A device whose acceptance reply was lost (reset, timeout) posts the same manifest bytes
again. The cloud answers that repeat exactly as the first acceptance (status and body),
from the stored manifest and custody rows, without a second custody set or audit entry,
also when the repeat races the first acceptance. A different manifest, and any PUT,
for the accepted token is still 409 ``closed``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.services.device_events import Result
from cloud_stub.services.evidence import Evidence
from cloud_stub.store.models import AuditRow, CustodyRecord, Request, Token
from tests.fixtures.cloud import CloudServer
from tests.integration.test_cloud_evidence import (
    Released,
    device_call,
    manifest_for,
    release,
    sealed_clip,
    upload,
)

HANG_GUARD_S = 30.0


def _custody(cloud: CloudServer, jti: str) -> list[tuple[str, str, str, Any]]:
    with cloud.service.store.read() as session:
        return [(r.clip_id, r.sha256, r.manifest_sha256, r.accepted_at) for r in
                session.execute(select(CustodyRecord).where(CustodyRecord.jti == jti)
                                .order_by(CustodyRecord.clip_id)).scalars()]


def _audit(cloud: CloudServer) -> list[tuple[str, str, dict[str, Any]]]:
    with cloud.service.store.read() as session:
        return [(e.action, e.subject, e.detail) for e in
                session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars()]


def _uploaded(cloud: CloudServer) -> tuple[Released, list[tuple[str, bytes]]]:
    r = release(cloud)
    assert r.agency.recipient is not None
    clips = [("clip-a", sealed_clip(r.agency.recipient, 20_000)),
             ("clip-b", sealed_clip(r.agency.recipient, 9_000))]
    for clip_id, data in clips:
        upload(cloud, r, clip_id, data)
    return r, clips


def test_the_accepted_manifest_posted_again_gets_the_first_answer(cloud: CloudServer) -> None:
    r, clips = _uploaded(cloud)
    manifest = manifest_for(r, clips)
    first = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest)
    assert first.status_code == 200, first.text
    assert first.json() == {"jti": r.jti, "accepted": 2,
                            "manifest_sha256": hashlib.sha256(manifest).hexdigest()}
    custody, audit = _custody(cloud, r.jti), _audit(cloud)
    assert [c[0] for c in custody] == ["clip-a", "clip-b"]
    assert audit[-1][:2] == ("evidence.accepted", f"token:{r.jti}")  # positive control

    again = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest)
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert _custody(cloud, r.jti) == custody  # one custody set, as it was
    assert _audit(cloud) == audit  # nothing new in the audit chain

    # the token stays closed to everything else: another manifest (a second later), a PUT
    later = manifest_for(r, clips, start=r.window_start + timedelta(hours=1, seconds=1))
    assert later != manifest
    other = device_call(cloud, r, "POST", f"{r.upload}/manifest", later)
    assert other.status_code == 409, other.text
    assert other.json()["error"]["code"] == "closed"
    put = device_call(cloud, r, "PUT", f"{r.upload}/clip-c?offset=0", b"late bytes")
    assert put.status_code == 409, put.text
    assert put.json()["error"]["code"] == "closed"
    assert _custody(cloud, r.jti) == custody
    assert _audit(cloud) == audit


def test_a_repeat_racing_the_first_acceptance_gets_its_answer(
    cloud: CloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device's retry after a timeout arrives while its first post is still being
    accepted: both passed the "already accepted?" check, the first commits, the second
    then finds the files gone or the manifest stored, and is answered as the first."""
    r, clips = _uploaded(cloud)
    manifest = manifest_for(r, clips)
    real: Callable[..., Any] = Evidence._check_and_store
    first_done = threading.Event()
    second_in = threading.Event()
    calls: list[int] = []
    lock = threading.Lock()

    def ordered(self: Evidence, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(len(calls))
            mine = calls[-1]
        if mine == 0:
            assert second_in.wait(HANG_GUARD_S)  # the second passed the first check
            try:
                return real(self, *args, **kwargs)
            finally:
                first_done.set()
        second_in.set()
        assert first_done.wait(HANG_GUARD_S)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Evidence, "_check_and_store", ordered)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(timeout=HANG_GUARD_S) as client:
            url = f"{r.upload}/manifest"
            answers.append(client.post(url, content=manifest, headers=r.device.headers(
                "POST", url, r.jti, manifest)))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_S)
    assert calls == [0, 1]  # both went as far as the files' check
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["accepted"] == 2
    assert [c[0] for c in _custody(cloud, r.jti)] == ["clip-a", "clip-b"]
    assert [a for a, s, _ in _audit(cloud) if s == f"token:{r.jti}"].count(
        "evidence.accepted") == 1


def _states(cloud: CloudServer, r: Released) -> tuple[str, str]:
    with cloud.service.store.read() as session:
        token = session.get(Token, r.jti)
        request = session.get(Request, r.request_id)
        assert token is not None
        assert request is not None
        return token.status, request.status


@pytest.mark.parametrize("uploaded_first", [False, True], ids=["evidence-received", "uploaded"])
def test_a_rejected_result_after_the_acceptance_keeps_the_evidence_received(
    cloud: CloudServer, uploaded_first: bool
) -> None:
    """A device that lost track of its own acceptance reports `rejected`: the cloud
    records the report in its audit log and keeps the token and the request where the
    accepted evidence put them. Positive control: the same report for a token without
    an accepted manifest moves both to `rejected`."""
    r, clips = _uploaded(cloud)
    accepted = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest_for(r, clips))
    assert accepted.status_code == 200, accepted.text
    device = r.device.device_id
    if uploaded_first:
        assert cloud.service.events.result_received(device, Result(
            jti=r.jti, status=TokenStatus.UPLOADED, reason="", detail="",
            clips=("clip-a", "clip-b")))
    before = _states(cloud, r)
    assert before == (("uploaded", "uploaded") if uploaded_first
                      else ("evidence_received", "evidence_received"))
    rejected = Result(jti=r.jti, status=TokenStatus.REJECTED, reason="upload_refused",
                      detail="cloud refused the upload (409): closed", clips=())
    assert cloud.service.events.result_received(device, rejected) is False
    assert _states(cloud, r) == before
    view = cloud.http.get(f"/v1/requests/{r.request_id}", headers=r.agency.headers).json()
    assert view["status"] == before[1]
    action, subject, detail = _audit(cloud)[-1]
    assert (action, subject) == ("token.rejected", f"token:{r.jti}")
    assert detail["reason"] == "upload_refused"
    assert detail["state_kept"] == before[0]
    with cloud.service.store.read() as session:
        assert session.scalar(select(func.count()).select_from(CustodyRecord).where(
            CustodyRecord.jti == r.jti)) == 2

    control = release(cloud, r.agency)
    assert cloud.service.events.result_received(control.device.device_id, Result(
        jti=control.jti, status=TokenStatus.REJECTED, reason="upload_refused", detail="", clips=()))
    assert _states(cloud, control) == ("rejected", "rejected")
