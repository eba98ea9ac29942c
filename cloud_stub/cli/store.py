"""`cloud-stub store upgrade [--dry-run]`: bring a store made by an older cloud stub up
to this version's tables (`cloud_stub.store.schema`).

It opens the store alone, not the whole service (which refuses an old store), adds what
is missing and safe to add in one transaction with a ``store.upgraded`` audit entry, and
refuses, naming the column, what it cannot do safely. Running it on a current store says
so and changes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from cloud_stub.cli._common import add_deployment_args, guarded, subcommands
from cloud_stub.config import default_store_url
from cloud_stub.store import Store
from cloud_stub.store.schema import apply_upgrade, plan_upgrade, redacted_url
from protocol.bundle import DeploymentLayout


def _upgrade(args: argparse.Namespace) -> int:
    store = Store(args.store_url or default_store_url(DeploymentLayout(args.deployment)))
    try:
        plan = plan_upgrade(store)
        where = redacted_url(store)
        for warning in plan.report.warnings():
            print(f"warning: {warning}", file=sys.stderr)
        if plan.refusals:
            print(f"cloud-stub store upgrade: {where} cannot be upgraded safely; nothing was "
                  "changed:", file=sys.stderr)
            for refusal in plan.refusals:
                print(f"  {refusal}", file=sys.stderr)
            return 1
        if not plan.steps:
            print(f"store {where} is current: nothing to do.")
            return 0
        print(f"{'dry run, ' if args.dry_run else ''}upgrading store {where}:")
        for step in plan.steps:
            print(f"  {step}")
        if args.dry_run:
            print("dry run: nothing was changed.")
            return 0
        at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        seq = apply_upgrade(store, plan, actor="operator:cli", at=at)
    finally:
        store.dispose()
    print(f"store upgraded; audit entry {seq} records it. Start the service again.")
    return 0


def register(sub: Any) -> None:
    group = subcommands(sub, "store", "the cloud's database")
    upgrade = group.add_parser(
        "upgrade", help="add the tables and nullable columns an older store lacks")
    upgrade.add_argument("--dry-run", action="store_true",
                         help="print what would be done and change nothing")
    add_deployment_args(upgrade)
    upgrade.set_defaults(handler=guarded("store upgrade", _upgrade))
