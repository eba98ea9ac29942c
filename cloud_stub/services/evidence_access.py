"""Evidence access for the agency: the listing of a request's evidence with its
manifests, and each age file, only for the agency that made the request; for anyone
else the request and its files do not exist. Every download is audited. The device
side of the endpoint (uploads, manifests) is `cloud_stub.services.evidence`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.domain.summaries import EvidenceSummary
from cloud_stub.errors import Forbidden, NotFound
from cloud_stub.provision.device_certs import device_certificate
from cloud_stub.services.context import PrincipalCaller, ServiceCore
from cloud_stub.services.summarise import evidence_file
from cloud_stub.store.evidence_files import check_clip_id, check_jti
from cloud_stub.store.models import CustodyRecord, Device, Manifest, Request, Token


@dataclass(frozen=True, slots=True)
class Download:
    sha256: str
    size: int
    clip_id: str
    chunks: Iterator[bytes]


class AgencyEvidence:
    """What the requesting agency may read of its evidence."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core

    def _own_request(self, session: Session, caller: PrincipalCaller, request_id: str
                     ) -> Request:
        if caller.role != "agency":
            raise Forbidden("only the requesting agency reads evidence")
        row = session.get(Request, request_id)
        if row is None or row.agency_id != caller.id:
            raise NotFound(f"no request {request_id[:40]!r}")
        return row

    def listing(self, caller: PrincipalCaller, request_id: str) -> EvidenceSummary:
        with self.core.store.transaction() as session:
            self._own_request(session, caller, request_id)
            records = session.execute(
                select(CustodyRecord)
                .where(CustodyRecord.request_id == request_id)
                .order_by(CustodyRecord.jti, CustodyRecord.clip_start, CustodyRecord.clip_id)
            ).scalars().all()
            jtis = sorted({r.jti for r in records})
            manifests = {
                m.jti: m.jws
                for m in session.execute(select(Manifest).where(Manifest.jti.in_(jtis))).scalars()
            }
            tokens = {
                t.jti: t.jws
                for t in session.execute(select(Token).where(Token.jti.in_(jtis))).scalars()
            }
            devices = sorted({r.device_id for r in records})
            identities = {
                d.id: d.identity_pub
                for d in session.execute(select(Device).where(Device.id.in_(devices))).scalars()
            }
            api = self.core.settings.api.url
            files = tuple(evidence_file(r, api) for r in records)
        now = self.core.now()
        certificates = {}
        for device, key in identities.items():
            made = device_certificate(self.core.layout, device, key, now)
            if made is not None:  # none when the root keys are offline and none was kept
                certificates[device] = made.decode()
        return EvidenceSummary(
            request_id=request_id,
            files=files,
            manifests=manifests,
            tokens=tokens,
            device_certificates=certificates,
            trust_root=self.core.layout.trust_root.read_text(),
        )

    def download(self, caller: PrincipalCaller, jti: str, clip_id: str) -> Download:
        """The age file of one clip. Raises `Forbidden` for a principal that is not an
        agency, and `NotFound` unless the caller's request owns it: another agency's
        file gets exactly the answer of a file that does not exist (no request id)."""
        check_jti(jti)
        check_clip_id(clip_id)
        if caller.role != "agency":
            raise Forbidden("only the requesting agency reads evidence")
        with self.core.store.transaction() as session:
            record = session.execute(
                select(CustodyRecord).where(
                    CustodyRecord.jti == jti, CustodyRecord.clip_id == clip_id
                )
            ).scalar_one_or_none()
            owner = None if record is None else session.get(Request, record.request_id)
            if record is None or owner is None or owner.agency_id != caller.id:
                raise NotFound("no such evidence file")
            now = self.core.now()
            self.core.audit.append(
                session,
                at=now,
                actor=caller.label,
                action="evidence.downloaded",
                subject=f"token:{jti}",
                detail={"clip_id": clip_id, "sha256": record.sha256},
            )
            sha, size = record.sha256, record.bytes
        return Download(sha256=sha, size=size, clip_id=clip_id,
                        chunks=self.core.files.read_blob(sha))
