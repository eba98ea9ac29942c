"""Deny by default: `check_every_route_is_guarded` sees the routes of included routers
(FastAPI keeps an included router as one lazy route) and refuses one without an audience."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI

from cloud_stub.api.deps import _api_routes, check_every_route_is_guarded
from cloud_stub.api.routes import evidence, meta, requests, review, transparency


def test_an_included_route_without_an_audience_is_refused() -> None:
    router = APIRouter()

    @router.get("/v1/open")
    def open_route() -> int:
        return 1

    app = FastAPI()
    app.include_router(router)
    with pytest.raises(RuntimeError, match="/v1/open declares no audience"):
        check_every_route_is_guarded(app)


def test_every_route_of_the_api_is_seen_and_guarded() -> None:
    app = FastAPI()
    for module in (requests, review, evidence, transparency, meta):
        app.include_router(module.router)
    check_every_route_is_guarded(app)
    assert len(list(_api_routes(app.routes))) >= 16
