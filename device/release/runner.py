"""Runs the jobs of accepted tokens: re-seal, upload, manifest, result and owner notice.

A release job moves each clip `pending -> sealed -> uploaded` in the release database:

- re-seal: the clip's sealed file is stream-decrypted with the delivered epoch identity
  and re-sealed to the token's recipient (the vault's `reseal`: plaintext only
  in memory, one 64 KiB chunk at a time) into `{state}/release/work/{jti}/{clip}.age`
  (`ReleaseLayout.work_file`), written as `.part`, fsync'd and renamed. The first pass
  uses the identities and clip records the handler opened and listed when it accepted
  the token (`device.release.handover`); a later pass (after a restart or a transport
  failure) opens and lists them again. Identities are dropped when the pass ends;
- upload: resumable, from whatever offset the cloud holds (`Uploader`), by a small pool
  of threads that starts on each clip as soon as it is sealed (re-seal and upload
  overlap; the cloud endpoint is the slower of the two);
- then the manifest, signed by the device identity key, and in one transaction the
  job's end with its `uploaded` result and the owner notice (due at `notify_after` when
  the court delayed notice).

Each step is recorded before the next begins, so after a crash the job continues where
it stopped: a clip is never re-sealed once sealed and its bytes are sent once per token.
A preservation job pins the window's clips with `hold(..., hold_until)` and reports
`preserved`. Transport failures leave the job running (the service retries it with
backoff); a final refusal by the cloud ends it with a `rejected` result.

A 409 ``closed`` from the cloud (`EvidenceClosed`, on a PUT or on the manifest) is not a
refusal: the cloud accepted a manifest for this token, which only this device's identity
key can have signed for this jti, so an earlier attempt of this job was accepted and its
answer never recorded (a lost reply, or an agent stopped between the cloud's acceptance
and the job's end). The job ends `uploaded` as it would have then: with the clips the
job recorded as uploaded (those its manifest listed; the clips are recorded before the
manifest is sent) and the owner notice, and the audit log says the acceptance was
learnt from the cloud (`accepted_by_cloud`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from device.clock import Clock
from device.errors import DoorbellError, TransportError
from device.release.errors import UploadRefused
from device.release.handover import Handover, Prepared
from device.release.jobs import IMMEDIATE, Job, JobClip, JobClipState, JobState
from device.release.keys import DeviceKeys
from device.release.layout import ReleaseLayout
from device.release.messages import notice_payload, result_payload
from device.release.records import ReleaseRecords
from device.release.uploader import EvidenceClosed, Uploader
from device.release.vaultview import RELEASABLE, ClipVault
from device.vault.reseal import reseal
from protocol.errors import MessageError, ProtocolError, RejectionCode, TokenRejected
from protocol.manifest import EvidenceManifest, ManifestClip, sign_manifest
from protocol.messages import ResultStatus
from protocol.token import ReleaseClaims, open_delivered_keys
from protocol.topics import DeviceTopics

log = logging.getLogger(__name__)

NOTICE_INVALID = "notice_invalid"  # the claims cannot make the owner notice
JOB_FAILED = "job_failed"  # failed unexpectedly MAX_UNEXPECTED_FAILURES times in a row
MAX_UNEXPECTED_FAILURES = 5


@dataclass(frozen=True, slots=True)
class RunResult:
    """`finished` is False when the job must be tried again later (transport failure)."""

    finished: bool
    status: ResultStatus | None = None
    detail: str = ""


class JobRunner:
    """Executes jobs one at a time. Raises nothing but EnvironmentFault from the disk."""

    def __init__(
        self,
        *,
        topics: DeviceTopics,
        keys: DeviceKeys,
        vault: ClipVault,
        records: ReleaseRecords,
        uploader: Uploader,
        layout: ReleaseLayout,
        clock: Clock,
        handover: Handover | None = None,
        stop: threading.Event | None = None,
        upload_workers: int = 2,
    ) -> None:
        if upload_workers < 1:
            raise ValueError("upload_workers must be at least 1")
        self._upload_workers = upload_workers
        self._topics = topics
        self._keys = keys
        self._vault = vault
        self._records = records
        self._jobs = records.jobs
        self._audit = records.audit
        self._uploader = uploader
        self._layout = layout
        self._clock = clock
        self._handover = handover or Handover()
        self._stop = stop or threading.Event()

    def _token_sha256(self, jti: str) -> str:
        """The sha256 of an accepted token's bytes, which every result names."""
        return self._records.token_sha256(jti) or ""

    def run(self, job: Job) -> RunResult:
        """Run one job as far as it goes now. A job that fails for a reason that cannot
        change ends `rejected` with a code, never left to be retried forever: claims
        that no longer parse (stored by an agent with a looser text rule) are
        ``malformed``, and claims that cannot make the owner notice are
        ``notice_invalid``, found before anything is re-sealed or sent."""
        prepared = self._handover.take(job.jti)  # what the handler opened, if it was now
        try:
            return self._run(job, prepared)
        finally:
            if prepared is not None:
                prepared.clear()

    def _run(self, job: Job, prepared: Prepared | None) -> RunResult:
        try:
            claims = ReleaseClaims.from_payload(json.loads(job.claims))
        except TokenRejected as exc:
            return self._fail(job, exc.code.value, f"the job's claims: {exc.detail}")
        except ValueError as exc:  # not JSON: the release database was edited
            return self._fail(job, RejectionCode.malformed.value, f"the job's claims: {exc}")
        if claims.is_preservation:
            return self._preserve(job, claims)
        try:
            self._notice(job, claims, [c.clip_id for c in job.clips], self._clock.now())
        except MessageError as exc:
            return self._fail(job, NOTICE_INVALID, f"the owner notice cannot be built: {exc}")
        try:
            self._reseal_and_upload(job, claims, prepared)
            job = self._jobs.job(job.jti) or job
            return self._finish_release(job, claims)
        except TransportError as exc:
            log.warning("release %s: %s; will retry", job.jti, exc)
            self._audit.append("upload_retry", {"jti": job.jti, "detail": str(exc)[:300]})
            return RunResult(False, None, str(exc))
        except EvidenceClosed as exc:
            return self._accepted_by_cloud(job, claims, exc)
        except UploadRefused as exc:
            return self._fail(job, "upload_refused", str(exc))
        except TokenRejected as exc:  # the stored keys no longer open: cannot proceed
            return self._fail(job, exc.code.value, exc.detail)

    # --- preservation ---------------------------------------------------------------
    def _preserve(self, job: Job, claims: ReleaseClaims) -> RunResult:
        assert claims.hold_until is not None
        ids = [c.clip_id for c in job.clips]
        self._vault.hold(ids, claims.hold_until)
        result = result_payload(jti=job.jti, status=ResultStatus.preserved, reason="", detail="",
                                clips=ids, token_sha256=self._token_sha256(job.jti))
        self._jobs.finish_job(
            job.jti, JobState.done, "", [(self._topics.result, result, False, IMMEDIATE)],
            result=result,
        )
        self._audit.append(
            "preserved", {"jti": job.jti, "clips": ids, "hold_until": claims.hold_until.isoformat()}
        )
        return RunResult(True, ResultStatus.preserved)

    # --- release --------------------------------------------------------------------
    def _reseal_and_upload(
        self, job: Job, claims: ReleaseClaims, prepared: Prepared | None
    ) -> None:
        """Re-seal pending clips one after the other while `upload_workers` threads
        upload each sealed clip as soon as it is ready (the cloud's evidence endpoint,
        not the re-seal, is the slow part). Raises EvidenceClosed when the cloud said
        the token's evidence was accepted already, else UploadRefused when any upload
        was refused, TransportError when one failed for now, TokenRejected from the keys."""
        errors: list[Exception] = []
        with ThreadPoolExecutor(self._upload_workers, thread_name_prefix="release-up") as pool:
            futures = [
                pool.submit(self._upload_one, job.jti, claims, c.clip_id, c.sha256)
                for c in job.clips
                if c.state is JobClipState.sealed
            ]
            try:
                for clip_id, sha in self._reseal_iter(job, claims, prepared):
                    futures.append(pool.submit(self._upload_one, job.jti, claims, clip_id, sha))
            finally:
                for future in futures:
                    try:
                        future.result()
                    except (TransportError, UploadRefused) as exc:
                        errors.append(exc)
        closed = [e for e in errors if isinstance(e, EvidenceClosed)]
        if closed:
            raise closed[0]
        refused = [e for e in errors if isinstance(e, UploadRefused)]
        if refused:
            raise refused[0]
        if errors:
            raise errors[0]

    def _reseal_iter(
        self, job: Job, claims: ReleaseClaims, prepared: Prepared | None
    ) -> Iterator[tuple[str, str]]:
        """Re-seal the pending clips; yields (clip id, sha256) as each is sealed. Uses
        `prepared` when the handler handed it over, else opens the keys and lists the
        clips itself (raises TokenRejected when the stored keys no longer open)."""
        pending = [c for c in job.clips if c.state is JobClipState.pending]
        if not pending:
            return
        assert claims.recipient is not None
        if prepared is None:
            prepared = self._prepare(claims)
        identities, records = prepared.identities, prepared.records
        try:
            for clip in pending:
                if self._stop.is_set():
                    raise TransportError("stopping")
                record = records.get(clip.clip_id)
                if record is None:
                    self._drop(job.jti, clip, "clip is no longer in the store")
                    continue
                identity = identities.get(record.epoch_id)
                if identity is None:
                    self._drop(job.jti, clip, f"no key delivered for epoch {record.epoch_id}")
                    continue
                sha = self._reseal_one(
                    job.jti, clip, identity, claims.recipient, truncated=not record.complete
                )
                if sha is not None:
                    yield clip.clip_id, sha
        finally:
            identities.clear()

    def _prepare(self, claims: ReleaseClaims) -> Prepared:
        recorded = {e.id: e.recipient for e in self._vault.epochs()}
        identities = open_delivered_keys(claims, self._keys.transport_identity, recorded)
        try:
            window = claims.window
            listed = self._vault.list_clips(window.start, window.end, RELEASABLE)
        except BaseException:
            identities.clear()
            raise
        return Prepared(identities, {r.id: r for r in listed})

    def _reseal_one(
        self, jti: str, clip: JobClip, identity: str, recipient: str, *, truncated: bool
    ) -> str | None:
        """Re-seal one clip into the work directory; its sha256, or None if skipped."""
        target = self._layout.work_file(jti, clip.clip_id)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = target.with_suffix(".part")
        try:
            with self._vault.sealed_path(clip.clip_id).open("rb") as source:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as sink:
                    size, sha = reseal(
                        source, sink, [identity], [recipient], allow_truncated=truncated
                    )
                    sink.flush()
                    os.fsync(sink.fileno())
            os.replace(part, target)
        except (DoorbellError, OSError) as exc:
            part.unlink(missing_ok=True)
            self._drop(jti, clip, f"cannot re-seal: {exc}")
            return None
        self._jobs.clip_sealed(jti, clip.clip_id, size, sha)
        self._audit.append(
            "resealed", {"jti": jti, "clip": clip.clip_id, "bytes": size, "sha256": sha}
        )
        return sha

    def _drop(self, jti: str, clip: JobClip, why: str) -> None:
        log.warning("release %s: skipping clip %s: %s", jti, clip.clip_id, why)
        self._jobs.drop_clip(jti, clip.clip_id)
        self._audit.append("clip_skipped", {"jti": jti, "clip": clip.clip_id, "reason": why})

    def _upload_one(self, jti: str, claims: ReleaseClaims, clip_id: str, sha: str | None) -> None:
        """Upload one sealed clip (resuming from the cloud's offset) and record it."""
        assert claims.upload is not None
        path = self._layout.work_file(jti, clip_id)
        if not path.exists():
            raise UploadRefused(0, f"re-sealed file of {clip_id} is gone from the disk")
        size = self._uploader.upload_file(upload=claims.upload, jti=jti, clip_id=clip_id,
                                          path=path, sha256=sha)
        self._jobs.clip_uploaded(jti, clip_id)
        self._audit.append("uploaded", {"jti": jti, "clip": clip_id, "bytes": size, "sha256": sha})

    def _finish_release(self, job: Job, claims: ReleaseClaims) -> RunResult:
        assert claims.upload is not None
        done = [c for c in job.clips if c.state is JobClipState.uploaded]
        manifest = EvidenceManifest(
            jti=job.jti,
            device=self._topics.device_id,
            clips=tuple(
                ManifestClip(
                    clip_id=c.clip_id,
                    start=c.start,
                    end=c.end,
                    bytes=c.bytes or 0,
                    sha256=c.sha256 or "",
                )
                for c in done
            ),
            created=self._clock.now().replace(microsecond=0),
        )
        try:
            signed = sign_manifest(manifest, self._keys.identity)
        except (ProtocolError, ValueError) as exc:
            return self._fail(job, "manifest_invalid", str(exc))
        self._uploader.upload_manifest(upload=claims.upload, jti=job.jti, manifest=signed)
        self._audit.append("manifest", {"jti": job.jti, "clips": [c.clip_id for c in done]})
        return self._complete(job, claims, [c.clip_id for c in done])

    def _accepted_by_cloud(self, job: Job, claims: ReleaseClaims,
                           exc: EvidenceClosed) -> RunResult:
        """The cloud holds an accepted manifest of this job (409 ``closed``): end the
        job `uploaded` with the clips it recorded as uploaded."""
        job = self._jobs.job(job.jti) or job
        ids = [c.clip_id for c in job.clips if c.state is JobClipState.uploaded]
        log.warning("release %s: the cloud had already accepted its evidence (%s); "
                    "finishing it as uploaded", job.jti, exc.where)
        self._audit.append("accepted_by_cloud", {
            "jti": job.jti, "heard_on": exc.where, "clips": ids, "detail": exc.detail[:300],
        })
        return self._complete(job, claims, ids)

    def _complete(self, job: Job, claims: ReleaseClaims, ids: list[str]) -> RunResult:
        """End the job `uploaded` with its result and owner notice, in one transaction."""
        now = self._clock.now()
        result = result_payload(jti=job.jti, status=ResultStatus.uploaded, reason="", detail="",
                                clips=ids, token_sha256=self._token_sha256(job.jti))
        notice = self._notice(job, claims, ids, now)
        notice_due: datetime = claims.notify_after or IMMEDIATE
        self._jobs.finish_job(
            job.jti,
            JobState.done,
            "",
            [
                (self._topics.result, result, False, IMMEDIATE),
                (self._topics.notice, notice, True, notice_due),
            ],
            result=result,
        )
        self._cleanup(job)
        log.info("release %s: uploaded %d clip(s)", job.jti, len(ids))
        return RunResult(True, ResultStatus.uploaded)

    @staticmethod
    def _notice(job: Job, claims: ReleaseClaims, ids: list[str], now: datetime) -> bytes:
        """The owner notice of this job. Raises MessageError when the claims cannot make
        one (`run` tries it before the job starts: that cannot change later)."""
        return notice_payload(
            jti=job.jti,
            basis=claims.basis,
            case=claims.case,
            window=claims.window,
            clips=ids,
            released_at=now,
        )

    def give_up(self, job: Job, detail: str) -> RunResult:
        """End a job that keeps failing unexpectedly ``job_failed`` (the service calls it
        after `MAX_UNEXPECTED_FAILURES` in a row: nothing is retried forever)."""
        return self._fail(job, JOB_FAILED, detail)

    def _fail(self, job: Job, reason: str, detail: str) -> RunResult:
        result = result_payload(
            jti=job.jti, status=ResultStatus.rejected, reason=reason, detail=detail, clips=(),
            token_sha256=self._token_sha256(job.jti),
        )
        self._jobs.finish_job(
            job.jti,
            JobState.failed,
            detail[:300],
            [(self._topics.result, result, False, IMMEDIATE)],
            result=result,
        )
        self._audit.append("job_failed", {"jti": job.jti, "code": reason, "detail": detail[:300]})
        self._cleanup(job)
        return RunResult(True, ResultStatus.rejected, detail)

    def _cleanup(self, job: Job) -> None:
        try:
            self._vault.clear_pending_upload([c.clip_id for c in job.clips])
        except DoorbellError as exc:
            log.warning("release %s: cannot clear pending-upload marks: %s", job.jti, exc)
        shutil.rmtree(self._layout.work / job.jti, ignore_errors=True)
