"""An upload cut at an arbitrary byte resumes from what the cloud holds and completes with
a matching sha256; a job interrupted by an agent restart continues where it stopped and
never sends a clip twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest

from device.release.uploader import HttpUploader, UploadLimits
from tests.fixtures.evidence import EvidenceEndpoint
from tests.fixtures.release import (
    CuttingProxy,
    DeviceRig,
    Minter,
    identity_key,
    run_chores,
)

CLIP_BYTES = 1_500_000
# Arbitrary bytes besides the chosen edges (this list replaced a byte drawn at random
# each run): the same ones every run, so a cut that fails fails on the rerun too.
ARBITRARY_CUTS = [271_829, 1_234_567]


@pytest.fixture
def proxy_factory(evidence: EvidenceEndpoint) -> Iterator[list[CuttingProxy]]:
    proxies: list[CuttingProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


@pytest.mark.parametrize(
    "cut_after",
    [1, 150, 700, 64 * 1024 + 3, 1_048_576 + 1_000, CLIP_BYTES - 5, *ARBITRARY_CUTS],
)
def test_upload_cut_at_a_byte_resumes_to_a_matching_sha256(
    release_rig: DeviceRig,
    evidence: EvidenceEndpoint,
    proxy_factory: list[CuttingProxy],
    cut_after: int,
) -> None:
    rig = release_rig
    now = rig.clock.now()
    clip = rig.record(now - timedelta(minutes=30), 5, payload=os.urandom(CLIP_BYTES))
    proxy = CuttingProxy(evidence.port, cut_after=cut_after, cuts=2)  # two drops in a row
    proxy.start()
    proxy_factory.append(proxy)
    minter = Minter(rig, f"http://127.0.0.1:{proxy.port}/v1/evidence")
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue(claims)
    uploader = HttpUploader(
        device_id=rig.device_id,
        identity=identity_key(rig),
        limits=UploadLimits(backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=5),
    )
    service = rig.service(uploader=uploader)
    try:
        assert service.handler.handle(minter.sign(claims)).status == "accepted"
        for _ in range(20):  # the worker's passes; a failed pass is retried later
            if not service.jobs.running_jobs():
                break
            run_chores(service)
            service._retry_at.clear()  # no waiting between passes in this test
        assert service.jobs.running_jobs() == []
        assert proxy.cut_done >= 1
        job = service.jobs.job(claims.jti)
        assert job is not None
        assert job.state == "done"
        [sent] = job.clips
        assert sent.clip_id == clip.id
        assert evidence.sha256(claims.jti, clip.id) == sent.sha256
        manifest = evidence.manifests[claims.jti]
        assert manifest.clips[0].sha256 == sent.sha256
        assert manifest.clips[0].bytes == len(evidence.files[(claims.jti, clip.id)].data)
    finally:
        service.stop()


def test_restart_mid_job_continues_without_resending(
    release_rig: DeviceRig, evidence: EvidenceEndpoint
) -> None:
    """The agent dies after the first clip went up: the second run uploads only the rest."""
    rig = release_rig
    now = rig.clock.now()
    first = rig.record(now - timedelta(minutes=40), 5)
    second = rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue(claims)
    # the job's first pass re-seals every clip; the cloud answers 503 to every upload
    # request, so the pass ends with nothing sent (one attempt, no backoff to wait out)
    evidence.fail_next = 1_000_000
    uploader = HttpUploader(
        device_id=rig.device_id, identity=identity_key(rig), limits=UploadLimits(max_failures=1)
    )
    service = rig.service(uploader=uploader)
    try:
        assert service.handler.handle(minter.sign(claims)).status == "accepted"
        service.run_jobs()
        evidence.fail_next = 0
        # the first clip's upload alone, as a crash right after it would leave the job
        job = service.jobs.job(claims.jti)
        assert job is not None
        sealed = {c.clip_id: c.sha256 for c in job.clips}
        head = job.clips[0]
        service.uploader.upload_file(
            upload=claims.upload or "",
            jti=claims.jti,
            clip_id=head.clip_id,
            path=service.layout.work_file(claims.jti, head.clip_id),
        )
        service.jobs.clip_uploaded(claims.jti, head.clip_id)
    finally:
        service.stop()
    puts_before = {k: v.puts for k, v in evidence.files.items()}
    service = rig.service()  # the agent restarts
    try:
        run_chores(service)
        job = service.jobs.job(claims.jti)
        assert job is not None
        assert job.state == "done"
        # nothing re-sealed (same sha256), the first clip's bytes not sent again
        assert {c.clip_id: c.sha256 for c in job.clips} == sealed
        assert evidence.files[(claims.jti, first.id)].puts == puts_before[(claims.jti, first.id)]
        assert evidence.sha256(claims.jti, second.id) == sealed[second.id]
        assert evidence.manifest_posts == {claims.jti: 1}
    finally:
        service.stop()
