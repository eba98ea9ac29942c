"""Evidence: the device's resumable upload and manifest, the agency's listing and files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from cloud_stub.api.deps import device_or_agency, device_request, principal, service_of
from cloud_stub.api.problems import GUARDED_ANSWERS
from cloud_stub.api.views import (
    EvidenceListing,
    ManifestAccepted,
    Offset,
    evidence_listing,
    manifest_accepted,
)
from cloud_stub.services.cloud_service import DeviceCaller, PrincipalCaller

router = APIRouter(tags=["evidence"], responses=GUARDED_ANSWERS)

Device = Annotated[DeviceCaller, Depends(device_request)]
Agency = Annotated[PrincipalCaller, Depends(principal("agency"))]
DeviceOrAgency = Annotated[DeviceCaller | PrincipalCaller, Depends(device_or_agency)]


@router.get(
    "/v1/evidence/{jti}/{clip_id}",
    response_model=Offset,
    responses={200: {"content": {"application/octet-stream": {}},
                     "description": "device: the bytes held; agency: the age file"}},
    summary="Resume point (signed device request) or the age file (requesting agency)",
)
def offset_or_file(request: Request, jti: str, clip_id: str, caller: DeviceOrAgency
                   ) -> Offset | StreamingResponse:
    service = service_of(request)
    if isinstance(caller, DeviceCaller):
        return Offset(offset=service.evidence.offset(caller, jti, clip_id))
    download = service.evidence.download(caller, jti, clip_id)
    return StreamingResponse(
        download.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(download.size),
            "Content-Disposition": f'attachment; filename="{download.clip_id}.age"',
            "X-Content-SHA256": download.sha256,
        },
    )


@router.put("/v1/evidence/{jti}/{clip_id}", response_model=Offset,
            summary="Append the next bytes of a clip (signed device request)")
def put_chunk(request: Request, jti: str, clip_id: str, caller: Device,
              offset: Annotated[int, Query(ge=0, le=2**53)]) -> Offset:
    return Offset(offset=service_of(request).evidence.append(caller, jti, clip_id, offset))


@router.post("/v1/evidence/{jti}/manifest", response_model=ManifestAccepted,
             summary="Submit the device-signed manifest (signed device request)")
def post_manifest(request: Request, jti: str, caller: Device) -> ManifestAccepted:
    return manifest_accepted(service_of(request).evidence.accept_manifest(caller, jti))


@router.get("/v1/requests/{request_id}/evidence", response_model=EvidenceListing,
            summary="Evidence of a request with its manifests (requesting agency)")
def listing(request: Request, request_id: str, caller: Agency) -> EvidenceListing:
    return evidence_listing(service_of(request).evidence.listing(caller, request_id))
