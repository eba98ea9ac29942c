"""An identical re-delivery of a token is answered, not refused (ADR 0011), through the
real handler, job runner, sealed store and a real HTTP evidence endpoint, without a
broker.

The cloud publishes a token again until it hears a result, so the device meets the same
bytes twice. It must not judge or act on them again (no second job, re-seal, upload or
seq), and must re-send the result its job already ended with, byte for byte, so that a
cloud which never heard it does. A token with the same jti and other bytes is still
`rejected: replayed`, and a token the device rejected is judged again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from device.release.jobs import IMMEDIATE
from device.release.messages import unverified_id
from device.release.service import ReleaseService
from device.vault.index import ClipRecord
from protocol.token import ReleaseClaims
from tests.fixtures.evidence import EvidenceEndpoint
from tests.fixtures.release import DeviceRig, Minter, run_chores


@pytest.fixture
def service(release_rig: DeviceRig) -> Iterator[ReleaseService]:
    service = release_rig.service()
    try:
        yield service
    finally:
        service.stop()


def _results(service: ReleaseService) -> list[bytes]:
    return [i.payload for i in service.jobs.due(IMMEDIATE) if i.topic == service.topics.result]


def _acknowledge_all(service: ReleaseService) -> None:
    """What the broker's PUBACKs do: the outbox is emptied."""
    for item in service.jobs.due(IMMEDIATE + timedelta(days=365 * 200)):
        service.jobs.sent(item.id)


def _events(service: ReleaseService, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in service.layout.audit_log.read_text().splitlines()]
    return [line["data"] for line in lines if line["event"] == event]


def _snapshot(evidence: EvidenceEndpoint) -> dict[tuple[str, str], bytes]:
    return {key: bytes(entry.data) for key, entry in evidence.files.items()}


def _released_clip(
    rig: DeviceRig, evidence: EvidenceEndpoint
) -> tuple[Minter, ReleaseClaims, ClipRecord]:
    """A clip recorded half an hour ago and the claims of a warrant token over the last
    hour, which the evidence endpoint takes."""
    now = rig.clock.now()
    clip = rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue(claims)
    return minter, claims, clip


def test_the_same_bytes_again_resend_the_result_and_do_nothing_else(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService
) -> None:
    minter, claims, clip = _released_clip(release_rig, evidence)
    token = minter.sign(claims)
    assert service.handler.handle(token).status == "accepted"
    run_chores(service)
    [first] = _results(service)
    assert json.loads(first)["status"] == "uploaded"
    assert json.loads(first)["clips"] == [clip.id]
    _acknowledge_all(service)  # published; then the cloud's copy of it is lost
    files, seq = _snapshot(evidence), service.replay.highest_seq()

    again = service.handler.handle(token)
    run_chores(service)
    assert (again.status, again.jti, again.detail) == (
        "duplicate", claims.jti, "result_queued_again"
    )
    assert _results(service) == [first]  # the same result, byte for byte
    # a third delivery while that result still waits does not queue it twice
    assert service.handler.handle(token).detail == "result_already_queued"
    assert _results(service) == [first]
    # nothing was done again: one job, one re-seal, one upload, one manifest, same seq
    assert evidence.manifest_posts == {claims.jti: 1}
    assert _snapshot(evidence) == files
    assert [e["clip"] for e in _events(service, "resealed")] == [clip.id]
    assert [e["clip"] for e in _events(service, "uploaded")] == [clip.id]
    assert service.replay.highest_seq() == seq
    assert service.jobs.running_jobs() == []
    assert service.jobs.due(IMMEDIATE + timedelta(days=1)) == service.jobs.due(IMMEDIATE)
    decisions = [e["status"] for e in _events(service, "decision")]
    assert decisions == ["accepted", "duplicate", "duplicate"]


def test_other_bytes_under_a_known_jti_are_still_replayed(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService
) -> None:
    """Positive control for the test above: only identical bytes are a re-delivery."""
    minter, claims, _ = _released_clip(release_rig, evidence)
    assert service.handler.handle(minter.sign(claims)).status == "accepted"
    run_chores(service)
    _acknowledge_all(service)
    other = minter.sign(dataclasses.replace(claims, exp=claims.exp - 1))  # same jti
    outcome = service.handler.handle(other)
    run_chores(service)
    assert (outcome.status, outcome.reason) == ("rejected", "replayed")
    [result] = [json.loads(p) for p in _results(service)]
    # Under the other bytes' own id: a result under claims.jti would tell the cloud that
    # the token it released, and this device accepted, was rejected.
    assert (result["jti"], result["status"], result["reason"]) == (
        unverified_id(hashlib.sha256(other).hexdigest()), "rejected", "replayed"
    )
    assert claims.jti in result["detail"]
    assert evidence.manifest_posts == {claims.jti: 1}


def test_a_redelivery_while_the_job_runs_only_audits(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService
) -> None:
    minter, claims, _ = _released_clip(release_rig, evidence)
    token = minter.sign(claims)
    assert service.handler.handle(token).status == "accepted"
    outcome = service.handler.handle(token)  # the job has not run yet
    assert (outcome.status, outcome.detail) == ("duplicate", "job_running")
    assert _results(service) == []
    assert [j.jti for j in service.jobs.running_jobs()] == [claims.jti]
    run_chores(service)
    assert [json.loads(p)["status"] for p in _results(service)] == ["uploaded"]
    assert evidence.manifest_posts == {claims.jti: 1}


def test_a_redelivery_of_a_deferred_token_waits_with_it(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService
) -> None:
    minter, claims, _ = _released_clip(release_rig, evidence)
    token = minter.sign(claims)
    release_rig.clock.set_synchronized(False)
    assert service.handler.handle(token).status == "deferred"
    outcome = service.handler.handle(token)
    assert (outcome.status, outcome.detail) == ("duplicate", "waiting_for_clock")
    assert [json.loads(p)["status"] for p in _results(service)] == ["deferred"]
    assert len(service.jobs.deferred()) == 1
    release_rig.clock.set_synchronized(True)
    run_chores(service)
    statuses = [json.loads(p)["status"] for p in _results(service)]
    assert statuses == ["deferred", "uploaded"]
    assert evidence.manifest_posts == {claims.jti: 1}


def test_a_failed_job_and_a_preservation_resend_their_own_results(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService
) -> None:
    rig = release_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    refused = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    # never issued: the endpoint refuses the upload (403), the job fails
    pin = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1),
                        basis="preservation")
    tokens = [minter.sign(refused), minter.sign(pin)]
    for token in tokens:
        assert service.handler.handle(token).status == "accepted"
        run_chores(service)
    first = _results(service)
    assert [(json.loads(p)["status"], json.loads(p)["reason"]) for p in first] == [
        ("rejected", "upload_refused"), ("preserved", "")
    ]
    _acknowledge_all(service)
    for token in tokens:
        assert service.handler.handle(token).status == "duplicate"
    assert _results(service) == first


def test_a_token_rejected_before_is_judged_again(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService
) -> None:
    """Only accepted tokens are remembered: the same bytes after a rejection for a rule
    that no longer fails (here: not yet valid, then the time comes) are accepted."""
    rig = release_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    start = int(now.timestamp()) + 600
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1),
                           iat=start - 300, nbf=start, exp=start + 3600)
    evidence.issue(claims)
    token = minter.sign(claims)
    assert service.handler.handle(token).reason == "not_yet_valid"
    rig.clock.set(now + timedelta(minutes=10))
    assert service.handler.handle(token).status == "accepted"
    run_chores(service)
    assert evidence.manifest_posts == {claims.jti: 1}


def test_a_database_of_the_previous_version_is_upgraded(tmp_path: Path) -> None:
    """Old rows have no sha256: their tokens are judged as before (`replayed`)."""
    import sqlite3

    from device.release.db import ReleaseDb
    from device.release.jobs import JobStore
    from device.release.replay import ReplayState

    path = tmp_path / "release.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE accepted (jti TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
        "basis TEXT NOT NULL, accepted_at TEXT NOT NULL);"
        "CREATE TABLE jobs (jti TEXT PRIMARY KEY, basis TEXT NOT NULL, claims TEXT NOT NULL,"
        " state TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);"
        "INSERT INTO accepted VALUES ('old', 3, 'warrant', '2026-01-01');"
        "INSERT INTO jobs VALUES ('old', 'warrant', '{}', 'done', '', '2026-01-01');"
        "PRAGMA user_version=1;"
    )
    old.close()
    db = ReleaseDb(path)
    try:
        replay = ReplayState(db)
        assert replay.seen("old")
        assert replay.accepted_jti("ab" * 32) is None
        job = JobStore(db).job("old")
        assert job is not None
        assert job.result is None
        replay.record("new", 4, "warrant", sha256="cd" * 32)
        assert replay.accepted_jti("cd" * 32) == "new"
        assert db.query("PRAGMA user_version") == [(2,)]
    finally:
        db.close()
