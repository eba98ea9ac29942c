"""The console's pages: sign-in and out, the queue, a request with its decision and
re-issue panels, a token's life, evidence custody, the audit chain, the transparency
report, an agency's own requests. Each reads and acts through the service
(`CloudService`), as the API does.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from cloud_stub.api.problems import status_for
from cloud_stub.api.views import request_view
from cloud_stub.console import reads
from cloud_stub.console.charts import bar_chart, timeline
from cloud_stub.console.sessions import Admission
from cloud_stub.console.settings import ApprovalMode
from cloud_stub.console.web import (
    COOKIE,
    PREFIX,
    User,
    anyone,
    check_csrf,
    console_of,
    page,
    redirect,
    safe_next,
    set_session_cookie,
)
from cloud_stub.domain.lifecycle import RequestStatus
from cloud_stub.domain.review_rules import MAX_REASON_CHARS, Action
from cloud_stub.errors import AuthenticationError, CloudError, Forbidden
from cloud_stub.policy import Basis
from cloud_stub.services.intake import QueueQuery
from cloud_stub.services.reporting import transparency_report
from protocol.timefmt import parse_time

router = APIRouter()

Text = Annotated[str, Form(max_length=MAX_REASON_CHARS * 2)]
Csrf = Annotated[str | None, Form(max_length=128)]
STAFF = ("reviewer", "admin")


class Age(StrEnum):
    """The queue's age filter: how long ago a request was submitted."""

    ANY = "any"
    UNDER_1H = "under_1h"
    UNDER_24H = "under_24h"
    OVER_24H = "over_24h"
    OVER_7D = "over_7d"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _audit(request: Request, *, actor: str, action: str, subject: str,
           detail: dict[str, object]) -> None:
    service = console_of(request).service
    with service.store.transaction() as session:
        service.core.audit.append(session, at=service.core.now(), actor=actor, action=action,
                                  subject=subject, detail=detail)


# --- sign-in -------------------------------------------------------------------------


def _sign_in_form(request: Request, *, status_code: int = 200, problem: str | None = None,
                  expired: bool = False, next_path: str = "/") -> HTMLResponse:
    console = console_of(request)
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None or session.principal_id is not None:
        session = console.sessions.open()
    response = page(request, "sign_in.html", status_code, csrf=session.csrf, problem=problem,
                    expired=expired, next_path=safe_next(next_path))
    set_session_cookie(request, response, session)
    return response


@router.get("/sign-in", response_class=HTMLResponse, dependencies=[Depends(anyone)])
def sign_in_form(request: Request, expired: bool = False,
                 next_path: Annotated[str, Query(alias="next", max_length=300)] = "/"
                 ) -> HTMLResponse:
    return _sign_in_form(request, expired=expired, next_path=next_path)


@router.post("/sign-in", response_class=HTMLResponse, dependencies=[Depends(anyone)])
def sign_in(request: Request, api_key: Annotated[str, Form(max_length=200)],
            csrf: Csrf = None,
            next_path: Annotated[str, Form(alias="next", max_length=300)] = "/") -> Response:
    """Exchange an API key for a session. Rate-limited per client; audited either way."""
    console = console_of(request)
    client = _client(request)
    anonymous = console.sessions.get(request.cookies.get(COOKIE))
    if anonymous is None:
        return _sign_in_form(request, status_code=403,
                             problem="The form had expired. Please sign in again.")
    check_csrf(anonymous, csrf)
    admission = console.limiter.admit(client)
    if admission is not Admission.ALLOWED:
        if admission is Admission.REFUSED:  # once per client and window
            _audit(request, actor=f"client:{client}", action="console.sign_in_limited",
                   subject="console", detail={"client": client})
        return _sign_in_form(request, status_code=429, next_path=next_path,
                             problem="Too many sign-in attempts. Wait a minute and try again.")
    try:
        caller = console.service.authenticate(api_key.strip())
    except AuthenticationError as exc:
        _audit(request, actor=f"client:{client}", action="console.sign_in_failed",
               subject="console", detail={"client": client, "why": str(exc)})
        return _sign_in_form(request, status_code=401, next_path=next_path,
                             problem="That key was not accepted.")
    console.sessions.close(anonymous.id)
    session = console.sessions.open(caller.id)
    _audit(request, actor=caller.label, action="console.signed_in",
           subject=f"principal:{caller.id}", detail={"client": client, "role": caller.role})
    response = redirect(safe_next(next_path))
    set_session_cookie(request, response, session)
    return response


@router.post("/sign-out", response_class=HTMLResponse)
def sign_out(request: Request, user: User, csrf: Csrf = None) -> Response:
    check_csrf(user.session, csrf)
    console_of(request).sessions.close(user.session.id)
    _audit(request, actor=user.caller.label, action="console.signed_out",
           subject=f"principal:{user.caller.id}", detail={"client": _client(request)})
    response = redirect("/sign-in")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/", response_class=HTMLResponse)
def home(user: User) -> Response:
    return redirect("/queue" if user.caller.role in STAFF else "/mine")


# --- the queue and an agency's own requests ----------------------------------------------


@router.get("/queue", response_class=HTMLResponse)
def queue(
    request: Request,
    user: User,
    basis: Annotated[str, Query(max_length=32)] = "",
    status: Annotated[str, Query(max_length=32)] = RequestStatus.PENDING_REVIEW.value,
    org: Annotated[str, Query(max_length=200)] = "",
    age: Age = Age.ANY,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    console = console_of(request)
    if user.caller.role not in STAFF:
        raise Forbidden("only reviewers and admins see the review queue")
    now = console.service.core.now()
    after, before = {
        Age.ANY: (None, None),
        Age.UNDER_1H: (now - timedelta(hours=1), None),
        Age.UNDER_24H: (now - timedelta(hours=24), None),
        Age.OVER_24H: (None, now - timedelta(hours=24)),
        Age.OVER_7D: (None, now - timedelta(days=7)),
    }[age]
    size = console.settings.page_size
    result = console.service.intake.queue_page(user.caller, QueueQuery(
        status=status or None, basis=basis or None, org=org or None,
        created_after=after, created_before=before, limit=size, offset=(page_no - 1) * size,
    ))
    views = [request_view(r) for r in result.requests]
    return page(request, "queue.html", user=user, views=views, total=result.total,
                page_no=page_no,
                pages=max(1, -(-result.total // size)),
                filters={"basis": basis, "status": status, "org": org, "age": age.value},
                bases=[b.value for b in Basis], statuses=[s.value for s in RequestStatus],
                ages=[a.value for a in Age])


@router.get("/mine", response_class=HTMLResponse)
def mine(request: Request, user: User) -> HTMLResponse:
    if user.caller.role != "agency":
        raise Forbidden("this page lists an agency's own requests")
    views = [request_view(r)
             for r in console_of(request).service.intake.list_for(user.caller, limit=500)]
    return page(request, "mine.html", user=user, views=views)


# --- a request, and the decision ---------------------------------------------------------


def _request_page(request: Request, user: User, request_id: str, *, status_code: int = 200,
                  problem: str | None = None, reason: str = "",
                  reissue_problem: str | None = None, reissue_reason: str = ""
                  ) -> HTMLResponse:
    console = console_of(request)
    detail = reads.request_page(console.service, user.caller, request_id)
    view = detail.view
    line = None
    if view.window is not None:
        marks = [("submitted", view.created_at)]
        for key, label in (("issued", "warrant issued"), ("expires", "warrant expires")):
            value = detail.court.statement.get(key) if detail.court and detail.court.statement \
                else None
            if isinstance(value, str):
                marks.append((label, parse_time(value)))
        line = timeline(view.window.start, view.window.end, marks)
    may_decide = (user.caller.role == "reviewer" and view.status == RequestStatus.PENDING_REVIEW
                  and view.org != user.caller.org
                  and all(d.reviewer != user.caller.name for d in view.decisions))
    refused = console.service.reissuing.reissuable(user.caller, view.id)
    return page(request, "request.html", status_code, user=user, detail=detail, view=view,
                line=line, may_decide=may_decide, problem=problem, reason=reason,
                refused=refused, reissue_problem=reissue_problem,
                reissue_reason=reissue_reason,
                approval=console.approval(), modes=ApprovalMode,
                review_command=console.settings.review_command,
                api_url=console.service.core.settings.api.url)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(request: Request, request_id: str, user: User) -> HTMLResponse:
    return _request_page(request, user, request_id[:64])


@router.post("/requests/{request_id}/decide", response_class=HTMLResponse)
def decide(request: Request, request_id: str, user: User,
           action: Annotated[Action, Form()], reason: Text = "", csrf: Csrf = None
           ) -> Response:
    """Approve or deny through the service (`Reviewing.decide`, which re-checks who may
    decide and audits the decision). A refused decision shows the page again with the
    reason kept and the service's message."""
    check_csrf(user.session, csrf)
    console = console_of(request)
    if action is Action.APPROVE and console.approval() is ApprovalMode.REVIEWER_COMMAND:
        raise Forbidden("approvals are signed with the reviewer's own key: run the command "
                        "shown on the request page")
    try:
        console.service.reviewing.decide(user.caller, request_id[:64], action, reason)
    except CloudError as exc:
        return _request_page(request, user, request_id[:64], status_code=status_for(exc),
                             problem=str(exc), reason=reason)
    return redirect(f"/requests/{request_id[:64]}")


@router.post("/requests/{request_id}/reissue", response_class=HTMLResponse)
def reissue(request: Request, request_id: str, user: User, reason: Text = "",
            csrf: Csrf = None) -> Response:
    """Re-issue the request's refused tokens through the service (`Reissuing.reissue`,
    which checks who may, what is re-issuable and the law now, and audits
    ``token.reissued``). Under trust root v2 reviewers sign the new tokens on their own
    machines: 403. A refusal shows the page again with the reason kept."""
    check_csrf(user.session, csrf)
    console = console_of(request)
    if console.approval() is ApprovalMode.REVIEWER_COMMAND:
        raise Forbidden("re-issued tokens are signed with the reviewers' own keys: run the "
                        "command shown on the request page")
    try:
        console.service.reissuing.reissue(user.caller, request_id[:64], reason)
    except CloudError as exc:
        return _request_page(request, user, request_id[:64], status_code=status_for(exc),
                             reissue_problem=str(exc), reissue_reason=reason)
    return redirect(f"/requests/{request_id[:64]}")


# --- tokens, evidence, audit, transparency -----------------------------------------------


@router.get("/tokens/{jti}", response_class=HTMLResponse)
def token(request: Request, jti: str, user: User) -> HTMLResponse:
    service = console_of(request).service
    life = reads.token_life(service, user.caller, jti[:64])
    reissuable = any(r.jti == life.token.jti
                     for r in service.reissuing.reissuable(user.caller, life.request_id))
    return page(request, "token.html", user=user, life=life, reissuable=reissuable)


@router.get("/requests/{request_id}/evidence", response_class=HTMLResponse)
def evidence(request: Request, request_id: str, user: User) -> HTMLResponse:
    custody = reads.custody(console_of(request).service, user.caller, request_id[:64])
    return page(request, "evidence.html", user=user, custody=custody)


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, user: User) -> HTMLResponse:
    state = reads.audit_page(console_of(request).service, user.caller)
    return page(request, "audit.html", user=user, state=state)


@router.get("/transparency", response_class=HTMLResponse)
def transparency(request: Request, user: User) -> HTMLResponse:
    report = transparency_report(console_of(request).service.core)
    charts = [
        bar_chart("by-basis", "Requests by legal basis", report.by_basis),
        bar_chart("by-outcome", "Requests by outcome", report.by_outcome),
        bar_chart("refusals", "Refusals by code", report.refusals_by_code),
        bar_chart("by-agency", "Requests by agency",
                  {line.agency: line.requests for line in report.by_agency}),
    ]
    return page(request, "transparency.html", user=user, report=report, charts=charts)
