"""`cloud-stub devices list`: the device registry as the cloud sees it."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import func, select

from cloud_stub.cli._common import (
    add_deployment_args,
    guarded,
    open_service,
    print_json,
    print_table,
    subcommands,
)
from cloud_stub.store.models import Device, EscrowedEpoch
from cloud_stub.store.sequence import last_seq


def _list(args: argparse.Namespace) -> int:
    service = open_service(args)
    try:
        with service.store.transaction() as session:
            counts = dict(
                session.execute(
                    select(EscrowedEpoch.device_id, func.count()).group_by(EscrowedEpoch.device_id)
                ).all()
            )
            rows = [
                {
                    "id": d.id,
                    "identity_pub": d.identity_pub,
                    "transport_recipient": d.transport_recipient,
                    "status": d.last_status,
                    "status_at": d.last_status_at.isoformat() if d.last_status_at else None,
                    "escrowed_epochs": int(counts.get(d.id, 0)),
                    "last_seq": last_seq(session, d.id),
                }
                for d in session.execute(select(Device).order_by(Device.id)).scalars()
            ]
    finally:
        service.close()
    if args.json:
        print_json(rows)
    else:
        print_table(
            ("DEVICE", "STATUS", "EPOCHS", "LAST SEQ", "IDENTITY"),
            [(r["id"], r["status"] or "-", r["escrowed_epochs"], r["last_seq"],
              str(r["identity_pub"])[:16] + "...") for r in rows],
        )
    return 0


def register(sub: Any) -> None:
    group = subcommands(sub, "devices", "device registry")
    ls = group.add_parser("list", help="enrolled devices, their status and escrowed epochs")
    ls.add_argument("--json", action="store_true")
    add_deployment_args(ls)
    ls.set_defaults(handler=guarded("devices list", _list))
