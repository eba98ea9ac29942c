"""Requests for footage: submit (agency), list and read (agency: its own only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from cloud_stub.api.deps import principal, service_of
from cloud_stub.api.problems import GUARDED_ANSWERS, error_body
from cloud_stub.api.views import RequestView, as_json, request_view
from cloud_stub.domain.lifecycle import RequestStatus
from cloud_stub.policy.requests import AgencyRequest, FollowUpWarrant
from cloud_stub.services.cloud_service import PrincipalCaller

router = APIRouter(prefix="/v1/requests", tags=["requests"], responses=GUARDED_ANSWERS)

Agency = Annotated[PrincipalCaller, Depends(principal("agency"))]
Reader = Annotated[PrincipalCaller, Depends(principal("agency", "reviewer", "admin"))]
RequestId = Annotated[str, Query(max_length=64)]


@router.post(
    "",
    status_code=201,
    response_model=RequestView,
    responses={
        422: {"description": "refused by the legal check (error.code) or an invalid body"},
    },
    summary="Submit a request for footage (agency)",
)
def submit(request: Request, body: AgencyRequest, caller: Agency) -> JSONResponse:
    view = request_view(service_of(request).intake.submit(caller, body))
    location = {"Location": f"/v1/requests/{view.id}"}
    if view.status == RequestStatus.REFUSED:
        first = view.reasons[0]
        payload = error_body(first.code, first.reason)
        payload["request"] = as_json(view)
        return JSONResponse(payload, status_code=422, headers=location)
    return JSONResponse(as_json(view), status_code=201, headers=location)


@router.get("", response_model=list[RequestView], summary="List requests")
def list_requests(
    request: Request,
    caller: Reader,
    status: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[RequestView]:
    return [request_view(r) for r in service_of(request).intake.list_for(
        caller, status=status, limit=limit, offset=offset)]


@router.get("/{request_id}", response_model=RequestView, summary="One request")
def get_request(request: Request, request_id: str, caller: Reader) -> RequestView:
    return request_view(service_of(request).intake.get(caller, request_id))


@router.post(
    "/{request_id}/follow-up",
    response_model=RequestView,
    responses={
        409: {"description": "not an emergency, not granted, or already recorded"},
        422: {"description": "the follow-up warrant is refused (error.code: the policy's "
                             "own, e.g. court_unknown, court_signature_invalid)"},
    },
    summary="File the follow-up search warrant of an emergency (its agency)",
)
def follow_up(request: Request, request_id: str, body: FollowUpWarrant, caller: Agency
              ) -> RequestView:
    return request_view(service_of(request).follow_up.record(caller, request_id, body))
