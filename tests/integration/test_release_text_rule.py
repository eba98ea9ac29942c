"""The one text rule on the device (protocol/text.py), through the real handler, job
runner, sealed store and HTTP evidence endpoint: a token whose string claims hold a lone
surrogate (written as the JSON escape ``"\\ud800"``), a zero-width or a tag character is
refused ``malformed``; and a job that fails for a reason that cannot change (claims an
older agent stored, which cannot make the owner notice) is finished with a code instead
of being retried forever, so the job after it completes; so is one that keeps failing
unexpectedly, after a few tries with backoff that never hold up the jobs after it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from device.release.jobs import IMMEDIATE
from device.release.service import ReleaseService
from protocol import _jws
from protocol.token import TOKEN_TYP
from tests.fixtures.evidence import EvidenceEndpoint
from tests.fixtures.release import DeviceRig, Minter, run_chores


def _results(service: ReleaseService) -> dict[str, dict[str, Any]]:
    return {
        (r := json.loads(item.payload))["jti"]: r
        for item in service.jobs.due(IMMEDIATE)
        if item.topic == service.topics.result
    }


def _payload_with_docket(minter: Minter, rig: DeviceRig, docket: str) -> tuple[str, bytes]:
    """(jti, claims JSON) of a token whose case docket is `docket`, written with JSON
    escapes as any JSON encoder would write a lone surrogate."""
    now = rig.clock.now()
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1)).to_payload()
    claims["case"]["docket"] = docket
    return claims["jti"], json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()


def _signed(minter: Minter, payload: bytes) -> bytes:
    signers = [minter.signers["policy"], minter.signers["review"]]
    return _jws.encode(_jws.sign(payload, TOKEN_TYP, signers))


@pytest.mark.parametrize("docket", ["1:26-mj-\ud800", "1:26-mj-\u200b42", "1:26-mj-\U000e0041"],
                         ids=["lone-surrogate", "zero-width", "tag"])
def test_a_token_with_invisible_text_is_refused_and_the_next_one_completes(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, docket: str
) -> None:
    rig = release_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 2)
    minter = Minter(rig, evidence.base)
    _, payload = _payload_with_docket(minter, rig, docket)
    good = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue_payload(payload)
    evidence.issue(good)
    service = rig.service()
    try:
        outcome = service.handler.handle(_signed(minter, payload))
        assert (outcome.status, outcome.reason) == ("rejected", "malformed")
        assert "case.docket" in outcome.detail
        assert service.handler.handle(minter.sign(good)).status == "accepted"
        run_chores(service)
        results = _results(service)
        assert results[good.jti]["status"] == "uploaded"
        assert evidence.manifest_posts == {good.jti: 1}
    finally:
        service.stop()


def test_a_job_that_cannot_finish_ends_with_a_code_and_the_next_job_completes(
    release_rig: DeviceRig, evidence: EvidenceEndpoint
) -> None:
    """A job an older agent accepted with a lone surrogate in its case: its owner notice
    can never be built. It ends `rejected` ``malformed`` before anything is sent, and the
    job queued after it uploads."""
    rig = release_rig
    now = rig.clock.now()
    clip = rig.record(now - timedelta(minutes=30), 2)
    minter = Minter(rig, evidence.base)
    stuck_jti, payload = _payload_with_docket(minter, rig, "1:26-mj-\ud800")
    good = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue_payload(payload)
    evidence.issue(good)
    service = rig.service()
    try:
        window = (clip.id, clip.start, clip.end or clip.start)
        service.jobs.create_job(stuck_jti, "warrant", payload.decode(), [window])
        assert service.handler.handle(minter.sign(good)).status == "accepted"
        assert [j.jti for j in service.jobs.running_jobs()] == [stuck_jti, good.jti]
        run_chores(service)
        results = _results(service)
        assert (results[stuck_jti]["status"], results[stuck_jti]["reason"]) == (
            "rejected", "malformed")
        assert results[good.jti]["status"] == "uploaded"
        assert service.jobs.running_jobs() == []
        assert stuck_jti not in evidence.manifest_posts  # nothing sent under it
        assert not any(jti == stuck_jti for (jti, _) in evidence.files)
    finally:
        service.stop()


def test_a_job_that_fails_unexpectedly_ends_job_failed_and_never_blocks_the_next(
    release_rig: DeviceRig, evidence: EvidenceEndpoint
) -> None:
    """A signed token whose upload host has an empty label (``a..b``) passes the upload
    URL pattern, but no HTTP client can encode it: the job raises UnicodeError, which no
    retry changes. The job after it uploads on the first pass; the failing one is tried
    again with backoff and ends `rejected` ``job_failed`` after 5 failures."""
    rig = release_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 2)
    minter = Minter(rig, evidence.base)
    window = (now - timedelta(hours=1), now - timedelta(minutes=1))
    broken = minter.claims(*window)
    broken = dataclasses.replace(broken, upload=f"http://a..b/v1/evidence/{broken.jti}")
    good = minter.claims(*window)
    evidence.issue(good)
    service = rig.service()
    try:
        assert service.handler.handle(minter.sign(broken)).status == "accepted"
        assert service.handler.handle(minter.sign(good)).status == "accepted"
        run_chores(service)
        assert _results(service)[good.jti]["status"] == "uploaded"
        deadline = time.monotonic() + 30  # a hang guard: the backoff is 0.2 s to 1 s here
        while broken.jti not in _results(service) and time.monotonic() < deadline:
            run_chores(service)
            time.sleep(0.05)
        result = _results(service)[broken.jti]
        assert (result["status"], result["reason"]) == ("rejected", "job_failed")
        assert "5 unexpected failures" in result["detail"]
        assert "UnicodeError" in result["detail"]
        assert service.jobs.running_jobs() == []
    finally:
        service.stop()
