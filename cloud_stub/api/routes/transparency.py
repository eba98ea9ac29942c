"""The public transparency report (no key needed: counts only, docs/adr/0008)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime

from cloud_stub.api.deps import public, service_of
from cloud_stub.api.problems import error_answers
from cloud_stub.domain.transparency import TransparencyReport
from cloud_stub.errors import HostileInputError
from cloud_stub.services.reporting import transparency_report

router = APIRouter(tags=["transparency"])


@router.get("/v1/transparency", response_model=TransparencyReport,
            dependencies=[Depends(public)], responses=error_answers(400),
            summary="Requests by basis, outcome and agency; refusals; emergencies; notices")
def transparency(
    request: Request,
    since: Annotated[AwareDatetime | None, Query()] = None,
    until: Annotated[AwareDatetime | None, Query()] = None,
) -> TransparencyReport:
    if since is not None and until is not None and until <= since:
        raise HostileInputError("'until' must be after 'since'", code="bad_period")
    return transparency_report(service_of(request).core, period_start=since, period_end=until)
