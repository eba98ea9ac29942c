"""Who am I, the device registry, the audit chain's state, liveness."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select

from cloud_stub.api.deps import principal, public, service_of
from cloud_stub.api.problems import GUARDED_ANSWERS
from cloud_stub.domain.audit_chain import AuditChainBroken
from cloud_stub.services.cloud_service import PrincipalCaller
from cloud_stub.store.models import Device

router = APIRouter(tags=["meta"])

Anyone = Annotated[PrincipalCaller, Depends(principal("agency", "reviewer", "admin"))]
Staff = Annotated[PrincipalCaller, Depends(principal("reviewer", "admin"))]
Admin = Annotated[PrincipalCaller, Depends(principal("admin"))]


class Health(BaseModel):
    status: str


class WhoAmI(BaseModel):
    name: str
    role: str
    org: str


class DeviceOut(BaseModel):
    id: str
    identity_pub: str
    transport_recipient: str
    last_status: str | None
    last_status_at: datetime | None


class AuditState(BaseModel):
    ok: bool
    entries: int
    problem: str | None


@router.get("/healthz", response_model=Health, dependencies=[Depends(public)])
def health() -> Health:
    return Health(status="ok")


@router.get("/v1/whoami", response_model=WhoAmI, responses=GUARDED_ANSWERS)
def whoami(caller: Anyone) -> WhoAmI:
    return WhoAmI(name=caller.name, role=caller.role, org=caller.org)


@router.get("/v1/devices", response_model=list[DeviceOut], responses=GUARDED_ANSWERS,
            summary="Enrolled devices")
def devices(request: Request, caller: Staff) -> list[DeviceOut]:
    with service_of(request).store.transaction() as session:
        rows = session.execute(select(Device).order_by(Device.id)).scalars().all()
        return [
            DeviceOut(id=r.id, identity_pub=r.identity_pub,
                      transport_recipient=r.transport_recipient,
                      last_status=r.last_status, last_status_at=r.last_status_at)
            for r in rows
        ]


@router.get("/v1/audit/verify", response_model=AuditState, responses=GUARDED_ANSWERS,
            summary="Verify the audit chain")
def audit_verify(request: Request, caller: Admin) -> AuditState:
    try:
        report = service_of(request).core.audit.verify()
    except AuditChainBroken as exc:
        return AuditState(ok=False, entries=exc.seq - 1, problem=str(exc))
    return AuditState(ok=True, entries=report.entries, problem=None)
