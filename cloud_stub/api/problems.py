"""Turning errors into HTTP answers: one JSON shape, a stable code, never a 500 for input.

Every error body is ``{"error": {"code": "...", "message": "..."}}`` (plus fields a
client needs, such as the true ``offset`` of a resumable upload). Validation errors name
the field and the problem; malformed JSON names the position.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_stub.errors import (
    AuthenticationError,
    CloudError,
    Conflict,
    EnvironmentFault,
    Forbidden,
    HostileInputError,
    NotFound,
    RefusedByPolicy,
    TooLarge,
)
from cloud_stub.store.evidence_files import WrongOffset

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[CloudError], int], ...] = (
    (AuthenticationError, 401),
    (TooLarge, 413),
    (HostileInputError, 400),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RefusedByPolicy, 422),
    (EnvironmentFault, 503),
)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}`` (plus fields a client needs,
    such as the true ``offset`` of a resumable upload)."""

    error: ErrorDetail


def error_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses, each with the error body."""
    return {status: {"model": ErrorBody, "description": _ANSWERS[status]}
            for status in statuses}


_ANSWERS: Final[dict[int, str]] = {
    400: "bad input (error.code names it: malformed JSON, a bad id, a reason that is not text)",
    401: "no credentials, or credentials that match no principal or issued token",
    403: "authenticated, but this principal may not do this",
    404: "no such object, or one the caller may not know exists",
}
GUARDED_ANSWERS: Final = error_answers(400, 401, 403, 404)
"""What every route behind credentials can answer besides its own statuses."""


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def status_for(exc: CloudError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if not errors:
        return "invalid_request", "the request is not valid"
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return "malformed_json", f"the body is not valid JSON: {ctx.get('error', 'parse error')}"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid_request", "; ".join(parts) + more


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body sent without a JSON content type: FastAPI then sees no object at all and
    would answer "Input should be a valid dictionary"."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return False
    return any(tuple(err.get("loc", ())) == ("body",) for err in exc.errors())


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""

    @app.exception_handler(CloudError)
    async def _cloud_error(_request: Request, exc: CloudError) -> JSONResponse:
        status = status_for(exc)
        headers: dict[str, str] = {}
        body = error_body(exc.code, exc.message)
        if isinstance(exc, WrongOffset):
            # The device's uploader reads the true resume point at the top level.
            body["offset"] = exc.offset
            body["error"]["offset"] = exc.offset
        if isinstance(exc, AuthenticationError):
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, EnvironmentFault):
            log.error("environment fault: %s", exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_not_json(request, exc):
            return JSONResponse(error_body(
                "unsupported_media_type",
                "the body must be JSON sent with the header Content-Type: application/json "
                f"(this request says {request.headers.get('content-type') or 'nothing'})",
            ), status_code=415)
        code, message = _describe_validation(exc)
        status = 400 if code == "malformed_json" else 422
        return JSONResponse(error_body(code, message), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        message = str(exc.detail)
        if exc.status_code == 400:
            message = f"the body could not be parsed as JSON ({message})"
        return JSONResponse(
            error_body(code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            error_body("internal_error", "the service failed; the operator has the log"),
            status_code=500,
        )
