"""Building the console's application (mounted by `cloud_stub.api.create_app`)."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_stub.api.deps import check_every_route_is_guarded
from cloud_stub.api.problems import status_for
from cloud_stub.console.pages import router
from cloud_stub.console.sessions import SessionStore, SignInLimiter
from cloud_stub.console.settings import ConsoleSettings
from cloud_stub.console.web import (
    PREFIX,
    Console,
    CsrfRejected,
    SecurityHeaders,
    SignInRequired,
    make_templates,
    page,
    redirect,
    safe_next,
)
from cloud_stub.errors import CloudError, EnvironmentFault
from cloud_stub.services.cloud_service import CloudService

log = logging.getLogger(__name__)


def _error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return page(request, "error.html", status, title=title, message=message, user=None)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        query = {"expired": "1"} if request.cookies.get("console_session") else {}
        wanted = safe_next(request.url.path.removeprefix(PREFIX))
        if request.method == "GET" and wanted != "/":
            query["next"] = wanted
        return redirect(f"/sign-in?{urlencode(query)}" if query else "/sign-in")

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        return _error(request, 403, "Form refused",
                      "The form's security token is missing or wrong. Reload the page and "
                      "try again.")

    @app.exception_handler(CloudError)
    async def _cloud(request: Request, exc: CloudError) -> Response:
        if isinstance(exc, EnvironmentFault):
            log.error("environment fault: %s", exc)
        return _error(request, status_for(exc), "Not possible", f"{exc.message} ({exc.code})")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()[:5]
        ]
        return _error(request, 400, "Bad input", "; ".join(parts) or "the input is not valid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, "Not found" if exc.status_code == 404
                      else "Refused", str(exc.detail))


def create_console(service: CloudService, settings: ConsoleSettings | None = None) -> FastAPI:
    """The console as an application to mount at ``/console``. Raises RuntimeError when a
    route declares no audience."""
    settings = settings or ConsoleSettings()
    app = FastAPI(title="sealed-doorbell review console", docs_url=None, redoc_url=None,
                  openapi_url=None)
    clock = service.core.now
    app.state.console = Console(
        service=service,
        settings=settings,
        sessions=SessionStore(store=service.store, clock=clock,
                              idle=timedelta(seconds=settings.idle_s),
                              absolute=timedelta(seconds=settings.absolute_s)),
        limiter=SignInLimiter(store=service.store, clock=clock,
                              attempts=settings.sign_in_attempts,
                              per=timedelta(seconds=settings.sign_in_window_s)),
        templates=make_templates(),
    )
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("cloud_stub.console", "static")]),
              name="static")
    _install_errors(app)
    check_every_route_is_guarded(app)
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["PREFIX", "create_console"]
