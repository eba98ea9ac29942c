"""The console's plumbing: templates, security headers, who is signed in, CSRF, errors.

Every response carries a strict Content-Security-Policy (scripts and styles only from
``/console/static``, no inline script or style, no frames, forms only to this origin).
Every route declares its audience as the API's routes do (`cloud_stub.api.deps`):
`signed_in` (a live session of an enabled principal) or `anyone` (the sign-in form, the
static files). A form is accepted only with its session's CSRF token (403 otherwise).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.middleware.base import BaseHTTPMiddleware

from cloud_stub.api.deps import AUDIENCE_MARK
from cloud_stub.console.sessions import ConsoleSession, SessionStore, SignInLimiter
from cloud_stub.console.settings import ApprovalMode, ConsoleSettings, approval_mode
from cloud_stub.console.text import inert
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.services.context import PrincipalCaller, caller_of
from cloud_stub.store.models import Principal

COOKIE = "console_session"
PREFIX = "/console"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


_NEXT = re.compile(r"/(?:[A-Za-z0-9_.~-]+(?:/[A-Za-z0-9_.~-]+)*)?")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path inside the console (``/requests/ID``), never
    another site (``//host``, ``https:...``, a backslash) and never the sign-in form;
    ``/`` otherwise."""
    if not value or _NEXT.fullmatch(value) is None or value.startswith("/sign-"):
        return "/"
    return value


class SignInRequired(Exception):
    """No live session: the browser goes to the sign-in page."""


class CsrfRejected(Exception):
    """A form without its session's CSRF token."""


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        if not request.url.path.startswith(f"{PREFIX}/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response


@dataclass
class Console:
    """The console's state, on ``app.state.console``."""

    service: CloudService
    settings: ConsoleSettings
    sessions: SessionStore
    limiter: SignInLimiter
    templates: Environment

    def approval(self) -> ApprovalMode:
        """How the approve panel works now: as configured, or else by the trust root in
        force at this moment, so that a rotation to v2 while the service runs changes
        the panel at the next page, not at the next restart."""
        if self.settings.approval is not None:
            return self.settings.approval
        return approval_mode(self.service.signer.reviewers_sign(self.service.core.now()))


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = math.ceil(rest / 60) if days == 0 and hours == 0 else rest // 60
    if days:
        return f"{sign}{days} d {hours} h"
    if hours:
        return f"{sign}{hours} h {minutes} min"
    return f"{sign}{minutes} min"


def _plain(value: object, limit: int = 2000) -> str:
    """Any stored value as inert text: strings as they are, documents as JSON."""
    if isinstance(value, str):
        return inert(value, limit)
    return inert(json.dumps(value, ensure_ascii=False, default=str), limit)


def make_templates() -> Environment:
    env = Environment(
        loader=PackageLoader("cloud_stub.console", "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["inert"] = inert
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    env.filters["plain"] = _plain
    env.filters["url_part"] = lambda v: quote(str(v), safe="")
    return env


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _mark(fn: Callable[..., Any], audience: str) -> Callable[..., Any]:
    setattr(fn, AUDIENCE_MARK, audience)
    return fn


@dataclass(frozen=True, slots=True)
class SignedIn:
    caller: PrincipalCaller
    session: ConsoleSession


def signed_in(request: Request) -> SignedIn:
    """The live session's principal, read again from the store (a disabled key ends
    every session at once). Raises `SignInRequired`."""
    console = console_of(request)
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None or session.principal_id is None:
        raise SignInRequired
    with console.service.store.transaction() as db:
        row = db.get(Principal, session.principal_id)
        if row is None or row.disabled:
            console.sessions.close_principal(session.principal_id)
            raise SignInRequired
        caller = caller_of(row)
    return SignedIn(caller, session)


_mark(signed_in, "console_session")


def anyone() -> None:
    """An explicit statement that a console route is open (sign-in form, static files)."""


_mark(anyone, "public")

User = Annotated[SignedIn, Depends(signed_in)]


def check_csrf(session: ConsoleSession, presented: str | None) -> None:
    if not session.csrf_matches(presented):
        raise CsrfRejected


def set_session_cookie(request: Request, response: Response, session: ConsoleSession) -> None:
    console = console_of(request)
    response.set_cookie(
        COOKIE, session.id, max_age=console.settings.absolute_s, path=PREFIX,
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )


def page(request: Request, template: str, status_code: int = 200, **context: Any
         ) -> HTMLResponse:
    console = console_of(request)
    html = console.templates.get_template(template).render(
        prefix=PREFIX, now=console.service.core.now(), **context
    )
    return HTMLResponse(html, status_code=status_code)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}{path}", status_code=303)
