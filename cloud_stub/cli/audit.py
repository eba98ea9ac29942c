"""`cloud-stub audit verify`: check every link of the stored audit chain."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cloud_stub.cli._common import add_deployment_args, guarded, open_service, print_json
from cloud_stub.domain.audit_chain import AuditChainBroken


def _verify(args: argparse.Namespace) -> int:
    service = open_service(args)
    try:
        report = service.core.audit.verify()
    except AuditChainBroken as exc:
        if args.json:
            print_json({"ok": False, "seq": exc.seq, "problem": exc.reason})
        else:
            print(f"audit chain BROKEN at entry {exc.seq}: {exc.reason}", file=sys.stderr)
        return 2
    finally:
        service.close()
    if args.json:
        print_json({"ok": True, "entries": report.entries, "head_seq": report.head_seq,
                    "head_hash": report.head_hash})
    else:
        print(f"audit chain intact: {report.entries} entries, head {report.head_seq} "
              f"{report.head_hash}")
    return 0


def register(sub: Any) -> None:
    group = sub.add_parser("audit", help="the hash-chained audit log")
    group_sub = group.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = group_sub.add_parser("verify", help="verify every link and the recorded head")
    verify.add_argument("--json", action="store_true")
    add_deployment_args(verify)
    verify.set_defaults(handler=guarded("audit verify", _verify))
