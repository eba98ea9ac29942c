"""Building the FastAPI application around a `CloudService`."""

from __future__ import annotations

from fastapi import FastAPI

from cloud_stub.api import problems
from cloud_stub.api.deps import check_every_route_is_guarded
from cloud_stub.api.limits import BodyLimitMiddleware
from cloud_stub.api.routes import evidence, meta, requests, review, signatures, transparency
from cloud_stub.console import ConsoleSettings, create_console
from cloud_stub.services.cloud_service import CloudService

API_VERSION = "1.0.0"


def create_app(service: CloudService, console: ConsoleSettings | None = None) -> FastAPI:
    """The API, and the review console under ``/console`` (docs/adr/0015-review-console.md).
    Raises RuntimeError when a route declares no audience (deny by default)."""
    app = FastAPI(
        title="sealed-doorbell cloud stub",
        version=API_VERSION,
        description=(
            "Requests for doorbell footage meet the legal check, human review, threshold-"
            "signed release tokens and evidence custody. Principals authenticate with "
            "`Authorization: Bearer <api key>`; devices sign their evidence requests."
        ),
    )
    app.state.service = service
    for module in (requests, review, signatures, evidence, transparency, meta):
        app.include_router(module.router)
    problems.install(app)
    app.mount("/console", create_console(service, console))
    check_every_route_is_guarded(app)
    app.add_middleware(BodyLimitMiddleware, limits=service.core.limits)
    return app
