"""Approval and re-issue by signature under trust root v2: the prepared payload a reviewer
signs on their own machine, and the signatures they post (docs/adr/0013-trust-root-v2.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cloud_stub.api.deps import principal, service_of
from cloud_stub.api.problems import GUARDED_ANSWERS
from cloud_stub.api.views import RequestView, request_view
from cloud_stub.domain.review_rules import MAX_REASON_CHARS
from cloud_stub.services.cloud_service import PrincipalCaller
from cloud_stub.services.signed_review import Submitted
from protocol.release_signing import DetachedSignature

router = APIRouter(tags=["review"], responses=GUARDED_ANSWERS)

Reviewer = Annotated[PrincipalCaller, Depends(principal("reviewer"))]


class SignatureItem(BaseModel):
    """One signature over one prepared payload."""

    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=1, max_length=128)
    protected: str = Field(min_length=1, max_length=512)
    signature: str = Field(min_length=86, max_length=86)


class SignaturesBody(BaseModel):
    """A reviewer's approval: their key id, a written reason and one signature per payload."""

    model_config = ConfigDict(extra="forbid")

    kid: str = Field(pattern=r"^[0-9a-f]{64}$")
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)
    signatures: list[SignatureItem] = Field(min_length=1, max_length=64)


@router.get("/v1/requests/{request_id}/signing-payload",
            summary="The exact token payloads to sign, prepared once, with what they release")
def signing_payload(request: Request, request_id: str, caller: Reviewer) -> dict[str, Any]:
    return service_of(request).signed_review.signing_payload(caller, request_id)


@router.post("/v1/requests/{request_id}/signatures", response_model=RequestView,
             summary="Approve by signing the prepared payloads with the reviewer's own key")
def signatures(request: Request, request_id: str, body: SignaturesBody, caller: Reviewer
               ) -> RequestView:
    items = [Submitted(s.jti, DetachedSignature(s.protected, s.signature))
             for s in body.signatures]
    return request_view(service_of(request).signed_review.submit(
        caller, request_id, body.kid, body.reason, items))


@router.get("/v1/requests/{request_id}/reissue-payload",
            summary="The exact payloads of new tokens replacing the ones a device refused "
                    "(stale_seq, expired), prepared once, with what they release and replace",
            description="Trust root v2 only. The request must be re-issuable and pass the "
                        "legal check now; the caller must be a reviewer of another "
                        "organisation than the submitter's. Each payload names the token it "
                        "replaces (`replaces`) and who signed it so far (`signed_by`); "
                        "`reviewers_required` is how many reviewers, each of another "
                        "organisation, must sign.")
def reissue_payload(request: Request, request_id: str, caller: Reviewer) -> dict[str, Any]:
    return service_of(request).signed_reissue.payload(caller, request_id)


@router.post("/v1/requests/{request_id}/reissue-signatures", response_model=RequestView,
             summary="Re-issue by signing the prepared re-issue payloads with the reviewer's "
                     "own key",
             description="Trust root v2 only. Accepted only from the reviewer whose key the "
                         "trust root lists under their name and organisation, over exactly "
                         "the prepared payloads, while the request is still re-issuable and "
                         "lawful. When enough reviewers signed, the service adds the policy "
                         "signature, supersedes the refused tokens and publishes the new "
                         "ones.")
def reissue_signatures(request: Request, request_id: str, body: SignaturesBody,
                       caller: Reviewer) -> RequestView:
    items = [Submitted(s.jti, DetachedSignature(s.protected, s.signature))
             for s in body.signatures]
    return request_view(service_of(request).signed_reissue.submit(
        caller, request_id, body.kid, body.reason, items))
