"""`doorbell-agent audit verify [--log FILE]`: check the device audit log's hash chain.

Exit 0 when the chain holds (prints the number of lines), 1 when it is broken (prints
the first broken line and why), 2 on a usage error (no log given and no config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from device.config import load_config
from device.errors import ConfigError
from device.release.audit import verify_log
from device.release.errors import AuditLogBroken
from device.release.layout import ReleaseLayout


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("audit", help="the device audit log")
    sub = group.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = sub.add_parser("verify", help="check the hash chain and name the first broken line")
    verify.add_argument(
        "--log",
        type=Path,
        default=None,
        help="audit log file (default: {state_dir}/release/audit.jsonl from --config)",
    )
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    path: Path | None = args.log
    if path is None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(
                f"doorbell-agent audit verify: give --log FILE or a config: {exc}", file=sys.stderr
            )
            return 2
        path = ReleaseLayout(config.agent.state_dir).audit_log
    try:
        lines = verify_log(path)
    except AuditLogBroken as exc:
        print(json.dumps({"ok": False, "log": str(path), "line": exc.line, "reason": exc.reason}))
        return 1
    print(json.dumps({"ok": True, "log": str(path), "lines": lines}))
    return 0
