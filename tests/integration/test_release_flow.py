"""The release side without a broker: a token goes through the real handler and job
runner, the real sealed store and a real HTTP evidence endpoint."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyrage

from device.release.jobs import IMMEDIATE
from device.release.service import ReleaseService
from tests.fixtures.evidence import EvidenceEndpoint
from tests.fixtures.release import DeviceRig, Minter, run_chores


def _results(service: ReleaseService) -> list[dict[str, Any]]:
    return [
        json.loads(item.payload)
        for item in service.jobs.due(IMMEDIATE)
        if item.topic == service.topics.result
    ]


def test_warrant_uploads_exactly_the_overlapping_clips_once(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, tmp_path: Path
) -> None:
    rig = release_rig
    now = rig.clock.now()
    base = now - timedelta(hours=2)
    before = rig.record(base, 5)
    inside = [
        rig.record(base + timedelta(minutes=10), 5),
        rig.record(base + timedelta(minutes=20), 5),
    ]
    edge = rig.record(base + timedelta(minutes=29, seconds=58), 5)  # overlaps the end
    after = rig.record(base + timedelta(minutes=40), 5)
    minter = Minter(rig, evidence.base)
    claims = minter.claims(base + timedelta(minutes=5), base + timedelta(minutes=30))
    evidence.issue(claims)
    service = rig.service()
    try:
        outcome = service.handler.handle(minter.sign(claims))
        assert outcome.status == "accepted"
        run_chores(service)
        run_chores(service)  # a second pass must not upload anything again
        wanted = {c.id for c in [*inside, edge]}
        assert {clip for (_, clip) in evidence.files} == wanted
        assert before.id not in outcome.clips
        assert after.id not in outcome.clips
        assert all(entry.conflicts == 0 for entry in evidence.files.values())
        assert evidence.manifest_posts == {claims.jti: 1}
        manifest = evidence.manifests[claims.jti]
        assert {c.clip_id for c in manifest.clips} == wanted
        for clip in manifest.clips:
            assert evidence.sha256(claims.jti, clip.clip_id) == clip.sha256
        # the agency opens every file with the standard age tool
        key = tmp_path / "agency.key"
        key.write_text(minter.agency_identity + "\n")
        key.chmod(0o600)
        for clip_id in wanted:
            sealed = tmp_path / f"{clip_id}.age"
            sealed.write_bytes(bytes(evidence.files[(claims.jti, clip_id)].data))
            plain = subprocess.run(
                ["age", "-d", "-i", str(key), str(sealed)], check=True, capture_output=True
            ).stdout
            assert plain == rig.recorded[clip_id]
        results = _results(service)
        assert [(r["jti"], r["status"]) for r in results] == [(claims.jti, "uploaded")]
        assert set(results[0]["clips"]) == wanted
        notices = [i for i in service.jobs.due(IMMEDIATE) if i.topic == service.topics.notice]
        assert len(notices) == 1
        assert notices[0].retain
        notice = json.loads(notices[0].payload)
        assert notice["jti"] == claims.jti
        assert notice["case"]["docket"] == "1:26-mj-00042"
        # nothing of the job is left on the device's disk
        assert not any((service.layout.root / "work").rglob("*.age"))
    finally:
        service.stop()


def test_delayed_notice_waits_for_notify_after(
    release_rig: DeviceRig, evidence: EvidenceEndpoint
) -> None:
    rig = release_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    later = now + timedelta(days=90)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1), notify_after=later)
    evidence.issue(claims)
    service = rig.service()
    try:
        assert service.handler.handle(minter.sign(claims)).status == "accepted"
        run_chores(service)
        due_now = service.jobs.due(now)
        assert [i.topic for i in due_now] == [service.topics.result]
        due_later = service.jobs.due(later)
        assert service.topics.notice in [i.topic for i in due_later]
    finally:
        service.stop()


def test_preservation_pins_clips_and_uploads_nothing(
    release_rig: DeviceRig, evidence: EvidenceEndpoint
) -> None:
    rig = release_rig
    now = rig.clock.now()
    clip = rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    claims = minter.claims(
        now - timedelta(hours=1), now - timedelta(minutes=1), basis="preservation"
    )
    service = rig.service()
    try:
        assert service.handler.handle(minter.sign(claims)).status == "accepted"
        run_chores(service)
        assert evidence.files == {}
        record = rig.store.get(clip.id)
        assert record.hold_until == claims.hold_until
        assert [r["status"] for r in _results(service)] == ["preserved"]
    finally:
        service.stop()


def test_plaintext_never_reaches_the_release_state(
    release_rig: DeviceRig, evidence: EvidenceEndpoint
) -> None:
    rig = release_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue(claims)
    service = rig.service()
    try:
        service.handler.handle(minter.sign(claims))
        run_chores(service)
    finally:
        service.stop()
    for path in rig.config.agent.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for marker in (b"ftyp", b"moof", b"mdat", b"AGE-SECRET-KEY-"):
                assert marker not in data, f"{marker!r} found in {path}"
    # the agency's identity opens the upload; the device holds no identity for it
    sealed = bytes(next(iter(evidence.files.values())).data)
    assert pyrage.decrypt(sealed, [minter.agency])[4:8] == b"ftyp"
