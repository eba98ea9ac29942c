"""Evidence custody: resumable uploads from devices, manifest acceptance, agency access.

Uploads (device, signed requests): ``GET {upload}/{clip_id}`` answers the bytes held,
``PUT {upload}/{clip_id}?offset=N`` appends (409 with the true offset when N is wrong,
413 past the token's size cap), ``POST {upload}/manifest`` accepts the device-signed
manifest only when its signature verifies under the enrolled identity, it names this
token and device, every clip lies inside the token's window, and every staged file has
exactly the manifest's size and sha256. Then each file moves to its content address and
gets a chain-of-custody record (token, device, manifest hash, file hash, times), and the
acceptance is appended to the audit chain, in one transaction.

Once a manifest is accepted the token is closed: a PUT or another manifest gets 409
``closed``, which tells the device its evidence was accepted (only a manifest signed by
the device's identity key for the jti can close it). The one exception is the same
manifest again, byte for byte (its sha256), from the same device: a device whose first
answer was lost retries it, and it gets the first acceptance's answer, built from the
stored manifest and custody rows, with nothing stored and nothing audited again (the
repeat changes nothing, and the audit chain should not grow with every retry or with a
signed request replayed within the clock skew). A PUT for a token the device reported
`rejected` (no manifest accepted) is 409 ``token_rejected``, not ``closed``.

Access (agency): `cloud_stub.services.evidence_access`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from cloud_stub.domain.device_requests import IssuedToken, check_device_request, parse_headers
from cloud_stub.domain.lifecycle import (
    EVIDENCE_ACCEPTED,
    REFUSED_BY_DEVICE,
    UNISSUED,
    RequestStatus,
    TokenStatus,
)
from cloud_stub.domain.summaries import ManifestReceipt
from cloud_stub.errors import Conflict, Forbidden, HostileInputError, NotFound
from cloud_stub.services.context import DeviceCaller, ServiceCore
from cloud_stub.services.evidence_access import AgencyEvidence
from cloud_stub.store.evidence_files import HashState, check_clip_id, check_jti
from cloud_stub.store.models import (
    CustodyRecord,
    Device,
    EvidenceFile,
    Manifest,
    Request,
    Token,
    Upload,
)
from protocol.errors import KeyFormatError, ManifestError
from protocol.keys import public_key_from_hex
from protocol.manifest import EvidenceManifest, check_manifest_window, verify_manifest
from protocol.token import Window

log = logging.getLogger(__name__)


def _check_url_jti(caller: DeviceCaller, jti: str) -> None:
    """Raises `Forbidden` unless the token in the URL is the one the request was signed
    under."""
    if caller.jti != jti:
        raise Forbidden("the signed jti is not the token in the URL", code="jti_mismatch")


class Evidence(AgencyEvidence):
    """The evidence endpoint's logic: the device side here, the agency side (the
    listing and the downloads) from `AgencyEvidence`."""

    def __init__(self, core: ServiceCore) -> None:
        super().__init__(core)

    # --- device side --------------------------------------------------------------------

    def authenticate(self, *, method: str, path: str, query: str,
                     headers: Mapping[str, str], body: bytes, body_hash: HashState
                     ) -> DeviceCaller:
        """`body_hash` is the caller's SHA-256 over every byte of `body` (hashed as it
        arrived). Raises `AuthenticationError` naming the failed rule."""
        parsed = parse_headers(headers)
        row = None
        if len(parsed.jti) <= 36:
            with self.core.store.read() as session:
                row = session.execute(
                    select(Token.device_id, Token.expires_at, Token.basis, Token.status,
                           Token.size_cap, Device.identity_pub, Device.revoked_at)
                    .join(Device, Device.id == Token.device_id)
                    .where(Token.jti == parsed.jti,
                           # a payload still waiting for reviewer signatures is no token
                           Token.status.not_in(UNISSUED))
                ).one_or_none()
        issued = None if row is None else IssuedToken(
            jti=parsed.jti,
            device_id=row.device_id,
            identity_pub=row.identity_pub,
            expires_at=row.expires_at,
            preservation=row.basis == "preservation",
            device_revoked=row.revoked_at is not None,
        )
        check_device_request(
            parsed=parsed, token=issued, method=method, path=path, query=query,
            body_sha256=body_hash.hexdigest(),
            now=self.core.now(), skew_s=self.core.limits.request_skew_s,
        )
        assert row is not None  # check_device_request refuses an unknown token
        return DeviceCaller(device_id=parsed.device_id, jti=parsed.jti, body=body,
                            token_status=row.status, size_cap=row.size_cap,
                            body_hash=body_hash)

    def _token_for(self, caller: DeviceCaller, jti: str) -> Token:
        _check_url_jti(caller, jti)
        with self.core.store.read() as session:
            token = session.get(Token, jti)
            if token is None or token.device_id != caller.device_id:
                raise NotFound("no such token for this device")
            return token

    def offset(self, caller: DeviceCaller, jti: str, clip_id: str) -> int:
        _check_url_jti(caller, jti)
        return self.core.files.offset(check_jti(jti), check_clip_id(clip_id))

    def append(self, caller: DeviceCaller, jti: str, clip_id: str, offset: int) -> int:
        """Append the caller's body to the clip's staging file at `offset`. The token's
        state is the one read when the request was authenticated (`caller`). The upload's
        row is written before its first bytes; its end is recorded with the manifest.
        Raises `WrongOffset` (409), `TooLarge` (413), `Conflict` after acceptance."""
        _check_url_jti(caller, jti)
        check_clip_id(clip_id)
        if caller.token_status in EVIDENCE_ACCEPTED:
            raise Conflict("the evidence of this token was already accepted", code="closed")
        if caller.token_status in REFUSED_BY_DEVICE:
            raise Conflict(f"the device reported this token rejected ({caller.token_status})",
                           code="token_rejected")
        if offset < 0:
            raise HostileInputError("offset must not be negative", code="bad_offset")
        if offset == 0:
            self._record_start(jti, clip_id, self.core.now())
        return self.core.files.append(jti, clip_id, offset, caller.body, caller.size_cap,
                                      caller.body_hash)

    def _record_start(self, jti: str, clip_id: str, now: datetime) -> None:
        """The upload's row, written before its first bytes are (a write that fails
        then leaves no bytes without a start time); kept when it exists."""
        with self.core.store.transaction() as session:
            if session.get(Upload, (jti, clip_id)) is None:
                session.add(Upload(jti=jti, clip_id=clip_id, received=0,
                                   started_at=now, updated_at=now))

    def accept_manifest(self, caller: DeviceCaller, jti: str) -> ManifestReceipt:
        """Check the manifest against the signature, the token and the staged files, then
        store the files content-addressed with their custody records.

        The manifest already accepted, posted again byte for byte by the same device, is
        answered as it was then (`_repeated`).

        Raises `HostileInputError` (code ``bad_manifest``, ``manifest_mismatch``,
        ``clip_outside_window``, ``file_missing``, ``size_mismatch``, ``hash_mismatch``)
        and `Conflict` (``closed``) when another manifest was already accepted for the
        token.
        """
        token = self._token_for(caller, jti)
        now = self.core.now()
        with self.core.store.transaction() as session:
            device = session.get(Device, caller.device_id)
            if device is None:
                raise NotFound("the device is no longer enrolled")
            identity_pub = device.identity_pub
            repeated = self._repeated(session, caller, jti)
        if repeated is not None:
            return repeated
        try:
            manifest = verify_manifest(caller.body, public_key_from_hex(identity_pub))
        except (ManifestError, KeyFormatError) as exc:
            raise HostileInputError(f"manifest refused: {exc}", code="bad_manifest") from exc
        if manifest.jti != jti or manifest.device != caller.device_id:
            raise HostileInputError(
                "the manifest names another token or device", code="manifest_mismatch"
            )
        window = Window(start=token.window_start, end=token.window_end)
        try:
            check_manifest_window(manifest, window)
        except ManifestError as exc:
            raise HostileInputError(str(exc), code="clip_outside_window") from exc
        if len(manifest.clips) > self.core.limits.max_clips_per_token:
            raise HostileInputError("the manifest lists too many clips", code="bad_manifest")
        self.core.files.close(jti)
        try:
            stored_files, accepted = self._check_and_store(caller, jti, manifest, now)
        except (HostileInputError, Conflict):
            self.core.files.reopen(jti)  # nothing was accepted: the upload stays as it was
            # the same bytes, posted again while the first were being accepted (the
            # device's retry after a timeout), lose the race to them: answer as they were
            with self.core.store.read() as session:
                repeated = self._repeated(session, caller, jti)
            if repeated is not None:
                return repeated
            raise
        except BaseException:
            self.core.files.reopen(jti)
            raise
        self.core.files.finish_accepted(jti, stored_files)
        return accepted

    def _repeated(self, session: Session, caller: DeviceCaller, jti: str
                  ) -> ManifestReceipt | None:
        """None when no manifest was accepted for the token; the first acceptance's
        answer when the caller's body is that manifest, byte for byte, from the same
        device. Raises `Conflict` (``closed``) for any other manifest."""
        accepted = session.get(Manifest, jti)
        if accepted is None:
            return None
        body_sha = hashlib.sha256(caller.body).hexdigest()
        if accepted.sha256 != body_sha or accepted.device_id != caller.device_id:
            raise Conflict("a manifest was already accepted for this token", code="closed")
        files = session.scalar(
            select(func.count()).select_from(CustodyRecord).where(
                CustodyRecord.jti == jti, CustodyRecord.manifest_sha256 == accepted.sha256)
        ) or 0
        log.info("token %s: the accepted manifest was posted again; answered as accepted",
                 jti)
        return ManifestReceipt(jti=jti, accepted=files, manifest_sha256=accepted.sha256)

    def _check_and_store(self, caller: DeviceCaller, jti: str, manifest: EvidenceManifest,
                         now: datetime) -> tuple[list[Path], ManifestReceipt]:
        """The staged files against the manifest, then in one transaction their content
        addresses, the custody records and the audit entry."""
        files = self.core.files
        checked: list[tuple[str, str, int, datetime, datetime, datetime]] = []
        for clip in manifest.clips:
            path = files.staging_path(jti, clip.clip_id)
            if not path.exists():
                raise HostileInputError(
                    f"clip {clip.clip_id} was not uploaded", code="file_missing"
                )
            stat = path.stat()
            size = stat.st_size
            if size != clip.bytes:
                raise HostileInputError(
                    f"clip {clip.clip_id}: {size} bytes received, the manifest says"
                    f" {clip.bytes}",
                    code="size_mismatch",
                )
            digest = files.staged_digest(jti, clip.clip_id, size)
            if digest != clip.sha256:
                raise HostileInputError(
                    f"clip {clip.clip_id}: sha256 of the received bytes is not the manifest's",
                    code="hash_mismatch",
                )
            last_write = datetime.fromtimestamp(stat.st_mtime, UTC)
            checked.append((clip.clip_id, digest, size, clip.start, clip.end, last_write))
        manifest_sha = hashlib.sha256(caller.body).hexdigest()
        with self.core.store.transaction() as session:
            if session.get(Manifest, jti) is not None:
                raise Conflict("a manifest was already accepted for this token", code="closed")
            row = session.get(Token, jti)
            if row is None:
                raise NotFound("no such token")
            session.add(Manifest(jti=jti, device_id=caller.device_id,
                                 jws=caller.body.decode("utf-8"), sha256=manifest_sha,
                                 accepted_at=now))
            stored_files = files.link_all(
                [(files.staging_path(jti, c[0]), c[1]) for c in checked])
            uploads = {
                u.clip_id: u
                for u in session.scalars(select(Upload).where(Upload.jti == jti))
            }
            stored = set(session.scalars(
                select(EvidenceFile.sha256)
                .where(EvidenceFile.sha256.in_([c[1] for c in checked]))
            ))
            new_files = {d: s for _, d, s, *_ in checked if d not in stored}
            if new_files:  # the files before the custody records that name them
                session.execute(insert(EvidenceFile), [
                    {"sha256": d, "bytes": s, "stored_at": now} for d, s in new_files.items()
                ])
            custody = []
            for clip_id, digest, size, start, end, last_write in checked:
                upload = uploads.get(clip_id)
                if upload is not None:
                    upload.received = size
                    upload.updated_at = min(max(last_write, upload.started_at), now)
                custody.append({
                    "jti": jti,
                    "request_id": row.request_id,
                    "device_id": caller.device_id,
                    "clip_id": clip_id,
                    "sha256": digest,
                    "bytes": size,
                    "clip_start": start,
                    "clip_end": end,
                    "manifest_sha256": manifest_sha,
                    "upload_started_at": upload.started_at if upload else now,
                    "received_at": upload.updated_at if upload else now,
                    "accepted_at": now,
                })
            if custody:
                session.execute(insert(CustodyRecord), custody)
            row.status = TokenStatus.EVIDENCE_RECEIVED.value
            row.updated_at = now
            request = session.get(Request, row.request_id)
            if request is not None and request.status == RequestStatus.RELEASED:
                request.status = RequestStatus.EVIDENCE_RECEIVED.value
                request.updated_at = now
            listed = {c[0] for c in checked}
            dropped = [f.clip_id for f in files.staged(jti) if f.clip_id not in listed]
            self.core.audit.append(
                session,
                at=now,
                actor=caller.label,
                action="evidence.accepted",
                subject=f"token:{jti}",
                detail={
                    "manifest_sha256": manifest_sha,
                    "files": [{"clip_id": c, "sha256": d, "bytes": s} for c, d, s, *_ in checked],
                    "discarded_unlisted": dropped,
                },
            )
        return stored_files, ManifestReceipt(jti=jti, accepted=len(checked),
                                              manifest_sha256=manifest_sha)
