"""Human review: the queue, approve and deny with a written reason (reviewer), and the
re-issue of a token the device refused as ``stale_seq`` or ``expired``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cloud_stub.api.deps import principal, service_of
from cloud_stub.api.problems import GUARDED_ANSWERS
from cloud_stub.api.views import RequestView, request_view
from cloud_stub.domain.review_rules import MAX_REASON_CHARS, MIN_REASON_CHARS, Action
from cloud_stub.services.cloud_service import PrincipalCaller

router = APIRouter(tags=["review"], responses=GUARDED_ANSWERS)

Reviewer = Annotated[PrincipalCaller, Depends(principal("reviewer"))]
QueueReader = Annotated[PrincipalCaller, Depends(principal("reviewer", "admin"))]


class DecisionBody(BaseModel):
    """A decision's written reason (kept in the store and the audit chain)."""

    model_config = ConfigDict(extra="forbid")

    # The minimum is checked by the review itself (`reason_required`, naming it), so that
    # an empty and a short reason get the same answer.
    reason: str = Field(max_length=MAX_REASON_CHARS,
                        description=f"at least {MIN_REASON_CHARS} characters")


@router.get("/v1/review/queue", response_model=list[RequestView], summary="Waiting for review")
def queue(request: Request, caller: QueueReader) -> list[RequestView]:
    return [request_view(r) for r in service_of(request).intake.queue(caller)]


@router.post("/v1/requests/{request_id}/approve", response_model=RequestView,
             summary="Approve (reviewer of another organisation)")
def approve(request: Request, request_id: str, body: DecisionBody, caller: Reviewer
            ) -> RequestView:
    return request_view(
        service_of(request).reviewing.decide(caller, request_id, Action.APPROVE, body.reason))


@router.post("/v1/requests/{request_id}/deny", response_model=RequestView,
             summary="Deny (reviewer of another organisation)")
def deny(request: Request, request_id: str, body: DecisionBody, caller: Reviewer
         ) -> RequestView:
    return request_view(
        service_of(request).reviewing.decide(caller, request_id, Action.DENY, body.reason))


@router.post("/v1/requests/{request_id}/reissue", response_model=RequestView,
             summary="Re-issue a token the device refused as stale_seq or expired "
                     "(reviewer of another organisation)")
def reissue(request: Request, request_id: str, body: DecisionBody, caller: Reviewer
            ) -> RequestView:
    return request_view(service_of(request).reissuing.reissue(caller, request_id, body.reason))
