"""`cloud-stub requests list|show|approve|deny|reissue`: the operator's view of the queue.

``approve`` and ``deny`` act as a named reviewer (``--reviewer``) with the same rules as
the API: another organisation than the submitter's, once per reviewer, a written reason.
``reissue`` has a named reviewer issue a new token for an approved request whose token
the device refused as ``stale_seq`` or ``expired`` (`cloud_stub.services.reissuing`).
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select

from cloud_stub.api.views import RequestView, WarrantView, as_json, request_view
from cloud_stub.cli._common import (
    add_deployment_args,
    guarded,
    open_service,
    print_json,
    print_table,
)
from cloud_stub.domain.review_rules import MIN_REASON_CHARS, Action
from cloud_stub.errors import NotFound
from cloud_stub.services.cloud_service import CloudService, PrincipalCaller
from cloud_stub.services.context import caller_of
from cloud_stub.store.models import Principal
from protocol import text as text_rule

REASON_HELP = f"the written reason (at least {MIN_REASON_CHARS} characters)"
OPERATOR = PrincipalCaller(id="operator", name="operator", role="admin", org="operator")
MAX_SHOWN = 4000  # characters of one value on the terminal


def _when(value: object) -> str:
    return str(value)[:19].replace("T", " ") if value else ""


def _shown(value: object) -> str:
    """A value as the operator's terminal may print it: every character the one text
    rule refuses (ESC, C1 controls, bidi overrides, zero-width...; protocol/text.py)
    made '?', also in rows stored before that rule held."""
    return text_rule.printable(str(value), MAX_SHOWN)


def _row(*values: object) -> tuple[str, ...]:
    return tuple(_shown(v) for v in values)


def _list(args: argparse.Namespace) -> int:
    service = open_service(args)
    try:
        views = [request_view(r) for r in
                 service.intake.list_for(OPERATOR, status=args.status, limit=args.limit)]
    finally:
        service.close()
    if args.json:
        print_json([as_json(v) for v in views])
        return 0
    print_table(
        ("ID", "BASIS", "STATUS", "AGENCY", "DEVICES", "APPROVALS", "CREATED", "CODE"),
        [
            _row(v.id, v.basis, v.status, v.agency, ",".join(v.devices),
                 f"{v.approvals.received}/{v.approvals.required}", _when(v.created_at),
                 v.reasons[0].code if v.reasons else "")
            for v in views
        ],
    )
    return 0


def _warrant_text(w: WarrantView) -> None:
    """The warrant as filed: what a reviewer checks with the court clerk."""
    unset = "- (not given)"
    print("warrant:")
    print(f"  court              {w.court or unset}")
    print(f"  judge              {w.judge or unset}")
    print(f"  docket             {w.docket or unset}")
    print(f"  order type         {w.order_type or unset}")
    print(f"  issued             {_when(w.issued) + ' UTC' if w.issued else unset}")
    print(f"  expires            {_when(w.expires) + ' UTC' if w.expires else unset}")
    print(f"  document sha256    {w.document_sha256 or unset}")
    if w.notify_after:
        print(f"  owner notice after {_when(w.notify_after)} UTC (non-disclosure order)")
    print(f"  investigator       {w.investigator or unset}")
    print(f"  contact            {w.contact or unset}")
    print(f"  agency case number {w.agency_case_number or unset}")


def _show_text(v: RequestView) -> None:
    print(f"request   {_shown(v.id)}")
    print(f"basis     {_shown(v.basis)}")
    print(f"status    {_shown(v.status)}")
    print(f"agency    {_shown(v.agency)} ({_shown(v.org)})")
    print(f"devices   {_shown(', '.join(v.devices)) or '-'}")
    if v.window:
        print(f"window    {_when(v.window.start)} .. {_when(v.window.end)} UTC")
    if v.warrant:
        _warrant_text(v.warrant)
    print(f"approvals {v.approvals.received} of {v.approvals.required}")
    if v.warrant:
        print(f"warrant expires {_when(v.warrant.expires)} UTC")
    if v.follow_up_due:
        print(f"follow-up due {_when(v.follow_up_due)} UTC")
    for r in v.reasons:
        print(f"reason    {_shown(r.code)}: {_shown(r.reason)}")
    if v.decisions:
        print("decisions:")
        print_table(("REVIEWER", "ORG", "ACTION", "AT", "REASON"),
                    [_row(d.reviewer, d.org, d.action, _when(d.at), d.reason)
                     for d in v.decisions])
    if v.tokens:
        print("tokens:")
        print_table(("JTI", "DEVICE", "SEQ", "STATUS", "EXPIRES", "REASON"),
                    [_row(t.jti, t.device, t.seq, t.status, _when(t.expires_at),
                          t.status_reason)
                     for t in v.tokens])


def _show(args: argparse.Namespace) -> int:
    service = open_service(args)
    try:
        view = request_view(service.intake.get(OPERATOR, args.request_id))
    finally:
        service.close()
    if args.json:
        print_json(as_json(view))
    else:
        _show_text(view)
    return 0


def _reviewer(service: CloudService, name: str) -> PrincipalCaller:
    with service.store.transaction() as session:
        row = session.execute(select(Principal).where(Principal.name == name)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no principal named {name!r}")
        return caller_of(row)


def _decide(action: Action) -> Any:
    def run(args: argparse.Namespace) -> int:
        service = open_service(args)
        try:
            caller = _reviewer(service, args.reviewer)
            view = request_view(
                service.reviewing.decide(caller, args.request_id, action, args.reason))
        finally:
            service.close()
        if args.json:
            print_json(as_json(view))
        else:
            print(f"{action.value}d by {caller.name}: request {view.id} is now {view.status}")
        return 0

    return run


def _reissue(args: argparse.Namespace) -> int:
    service = open_service(args)
    try:
        caller = _reviewer(service, args.reviewer)
        view = request_view(service.reissuing.reissue(caller, args.request_id, args.reason))
    finally:
        service.close()
    if args.json:
        print_json(as_json(view))
    else:
        print(f"re-issued by {caller.name}: request {view.id} is now {view.status}")
        for t in view.tokens:
            print(f"token {t.jti} {t.device} seq {t.seq} {t.status}")
    return 0


def register(sub: Any) -> None:
    group = sub.add_parser("requests", help="list, show, approve, deny or re-issue requests")
    group_sub = group.add_subparsers(dest="requests_command", required=True, metavar="COMMAND")

    ls = group_sub.add_parser("list", help="requests, newest first")
    ls.add_argument("--status", default=None, help="only requests in this status")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    add_deployment_args(ls)
    ls.set_defaults(handler=guarded("requests list", _list))

    show = group_sub.add_parser("show", help="one request with decisions and tokens")
    show.add_argument("request_id")
    show.add_argument("--json", action="store_true")
    add_deployment_args(show)
    show.set_defaults(handler=guarded("requests show", _show))

    for action in (Action.APPROVE, Action.DENY):
        cmd = group_sub.add_parser(action.value, help=f"{action.value} as a named reviewer")
        cmd.add_argument("request_id")
        cmd.add_argument("--reviewer", required=True, help="the reviewer's principal name")
        cmd.add_argument("--reason", required=True, help=REASON_HELP)
        cmd.add_argument("--json", action="store_true")
        add_deployment_args(cmd)
        cmd.set_defaults(handler=guarded(f"requests {action.value}", _decide(action)))

    reissue = group_sub.add_parser(
        "reissue", help="as a named reviewer, issue a new token for a released request "
                        "whose token the device rejected as stale_seq or expired")
    reissue.add_argument("request_id")
    reissue.add_argument("--reviewer", required=True, help="the reviewer's principal name")
    reissue.add_argument("--reason", required=True, help=REASON_HELP)
    reissue.add_argument("--json", action="store_true")
    add_deployment_args(reissue)
    reissue.set_defaults(handler=guarded("requests reissue", _reissue))
