"""`cloud-stub report`: the transparency report as text or JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from cloud_stub.cli._common import add_deployment_args, guarded, open_service, print_json
from cloud_stub.domain.transparency import render_text
from cloud_stub.errors import HostileInputError
from cloud_stub.services.log_recount import verify_with_log
from cloud_stub.services.reporting import transparency_report


def _instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-01-01T00:00:00Z")
    return parsed


def _report(args: argparse.Namespace) -> int:
    if args.since and args.until and args.until <= args.since:
        raise HostileInputError("--until must be after --since", code="bad_period")
    service = open_service(args)
    try:
        report = transparency_report(service.core, period_start=args.since,
                                     period_end=args.until)
    finally:
        service.close()
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        print(render_text(report))
    if args.verify_log is not None:  # recount from the public release log (ADR 0014)
        problems = verify_with_log(report, args.verify_log)
        for problem in problems:
            print(f"verify-log: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"verify-log: the release log agrees ({report.releases} releases)", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    report = sub.add_parser("report", help="the transparency report")
    report.add_argument("--json", action="store_true")
    report.add_argument("--since", type=_instant, default=None,
                        help="only requests submitted at or after this time")
    report.add_argument("--until", type=_instant, default=None,
                        help="only requests submitted before this time")
    report.add_argument("--verify-log", type=Path, default=None, metavar="POLICY",
                        help="recount releases from the release log named by this "
                        "tlog-policy file; exit 1 naming any difference")
    add_deployment_args(report)
    report.set_defaults(handler=guarded("report", _report))
