"""Who is calling: the dependencies every route must declare (deny by default).

Each route states its audience with exactly one of `principal(...)`, `device_request`,
`device_or_agency` or `public`. `check_every_route_is_guarded` runs when the app is
built and refuses to start a service with a route that declares none, so a route added
without a decision about its audience is a startup error, not an open door.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cloud_stub.errors import AuthenticationError, Forbidden
from cloud_stub.services.cloud_service import CloudService, DeviceCaller, PrincipalCaller

AUDIENCE_MARK = "__doorbell_audience__"
DEVICE_HEADER = "x-doorbell-device"

_bearer = HTTPBearer(auto_error=False, description="the principal's API key")


def _mark(fn: Callable[..., Any], audience: str) -> Callable[..., Any]:
    setattr(fn, AUDIENCE_MARK, audience)
    return fn


def service_of(request: Request) -> CloudService:
    service: CloudService = request.app.state.service
    return service


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None
                  ) -> PrincipalCaller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("this endpoint needs 'Authorization: Bearer <api key>'")
    return service_of(request).authenticate(credentials.credentials)


def principal(*roles: str) -> Callable[..., PrincipalCaller]:
    """A dependency admitting principals of the given roles only."""
    allowed = frozenset(roles)

    def dependency(request: Request, credentials: Credentials) -> PrincipalCaller:
        caller = _authenticate(request, credentials)
        if caller.role not in allowed:
            raise Forbidden(
                f"a {caller.role} may not use this endpoint (allowed: {', '.join(sorted(allowed))})"
            )
        return caller

    dependency.__name__ = f"principal_{'_'.join(sorted(allowed))}"
    _mark(dependency, "principal")
    return dependency


def _doc(text: str) -> Any:
    return Header(description=text)


async def device_request(
    request: Request,
    x_doorbell_device: Annotated[str | None, _doc("the device id")] = None,
    x_doorbell_jti: Annotated[str | None, _doc("the jti of a token issued to it")] = None,
    x_doorbell_timestamp: Annotated[str | None, _doc("unix seconds, within 300 s")] = None,
    x_doorbell_signature: Annotated[
        str | None, _doc("base64url Ed25519 by the identity key (request_signing)")
    ] = None,
) -> DeviceCaller:
    """A device request signed by its enrolled identity key under an issued token.

    The header parameters document the scheme in the OpenAPI description; the check
    reads them from the request (`device_auth.parse_headers`). The body (already held
    to its route's cap by `BodyLimitMiddleware`) is hashed piece by piece as it arrives,
    so the digest is ready when the last byte is; the store lookup and the signature
    check then run in the thread pool, off the event loop that receives other uploads.
    """
    hasher = hashlib.sha256()
    parts: list[bytes] = []
    async for part in request.stream():
        hasher.update(part)
        parts.append(part)
    body = b"".join(parts)
    return await run_in_threadpool(
        service_of(request).authenticate_device,
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers=request.headers,
        body=body,
        body_hash=hasher,
    )


_mark(device_request, "device")


async def device_or_agency(
    request: Request, credentials: Credentials
) -> DeviceCaller | PrincipalCaller:
    """A signed device request when the device headers are present, else an agency key."""
    if DEVICE_HEADER in request.headers:
        return await device_request(request)
    caller = _authenticate(request, credentials)
    if caller.role != "agency":
        raise Forbidden("only the requesting agency may download evidence")
    return caller


_mark(device_or_agency, "device_or_agency")


def public() -> None:
    """An explicit statement that a route is open to anyone (the transparency report)."""


_mark(public, "public")


def _audiences(dependant: Dependant) -> Iterable[str]:
    for dep in dependant.dependencies:
        mark = getattr(dep.call, AUDIENCE_MARK, None)
        if mark is not None:
            yield mark
        yield from _audiences(dep)


def _api_routes(routes: Iterable[object]) -> Iterable[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps an included router as
    one lazy route holding the `original_router`)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def check_every_route_is_guarded(app: FastAPI) -> None:
    """Raises RuntimeError naming the first route that declares no audience."""
    for route in _api_routes(app.routes):
        if not list(_audiences(route.dependant)):
            raise RuntimeError(
                f"route {sorted(route.methods or ())} {route.path} declares no audience; "
                "add principal(...), device_request, device_or_agency or public"
            )
