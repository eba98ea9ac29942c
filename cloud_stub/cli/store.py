"""`cloud-stub store upgrade [--dry-run]`: bring a store to this version's revision
(Alembic, `cloud_stub.store.migrate`, ADR 0016).

It opens the store alone, not the whole service (which refuses a store behind the
head). An empty store gets every revision; a store made before migrations (the previous
release's tables, no ``alembic_version``) is stamped at the baseline; a store at an
older revision gets the revisions it lacks. All of it, the check of the tables against
the models and a ``store.upgraded`` audit entry are one transaction. `--dry-run` prints
the revisions and their SQL and changes nothing. Running it on a current store says so
and changes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from cloud_stub.cli._common import add_deployment_args, guarded, subcommands
from cloud_stub.config import default_store_url
from cloud_stub.store import Store
from cloud_stub.store.migrate import (
    BASELINE,
    StoreOutdated,
    StoreState,
    read_revision,
    unknown_revision,
    upgrade,
    upgrade_sql,
)
from cloud_stub.store.schema import inspect_schema, redacted_url
from protocol.bundle import DeploymentLayout


def _upgrade(args: argparse.Namespace) -> int:
    store = Store(args.store_url or default_store_url(DeploymentLayout(args.deployment)))
    try:
        where = redacted_url(store)
        state = read_revision(store)
        if state.state is StoreState.UNKNOWN:
            raise StoreOutdated(unknown_revision(store, state))
        if state.state is StoreState.CURRENT:
            if not args.dry_run:  # refuses, naming them, tables that do not match
                upgrade(store, actor="operator:cli", at=dt.datetime.now(dt.UTC))
            print(f"store {where} is at revision {state.head}, current: nothing to do.")
            return 0
        for warning in inspect_schema(store.engine).warnings():
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{'dry run, ' if args.dry_run else ''}upgrading store {where} "
              f"({state.describe()}) to revision {state.head}:")
        if state.state is StoreState.BEFORE_MIGRATIONS:
            print(f"  stamp revision {BASELINE}: the previous release's tables, kept as they are")
        for revision in state.pending:
            print(f"  apply revision {revision}")
        if args.dry_run:
            print("SQL:")
            print(upgrade_sql(store, state).rstrip())
            print("dry run: nothing was changed.")
            return 0
        result = upgrade(store, actor="operator:cli",
                         at=dt.datetime.now(dt.UTC).replace(microsecond=0))
    finally:
        store.dispose()
    print(f"store upgraded to revision {state.head}; audit entry {result.audit_seq} records "
          "it. Start the service again.")
    return 0


def register(sub: Any) -> None:
    group = subcommands(sub, "store", "the cloud's database")
    upgrade_parser = group.add_parser(
        "upgrade", help="bring the store to this version's revision (Alembic)")
    upgrade_parser.add_argument("--dry-run", action="store_true",
                                help="print the revisions and their SQL, change nothing")
    add_deployment_args(upgrade_parser)
    upgrade_parser.set_defaults(handler=guarded("store upgrade", _upgrade))
