"""The device registry as the store keeps it: one row per enrolled device, mirroring its
public record so that queries and foreign keys can use it. Reading the records from the
deployment directory is `cloud_stub.services.device_registry`'s job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from cloud_stub.store.models import Device
from cloud_stub.store.sequence import ensure_counter


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device's public record: its identity key (hex Ed25519), its transport and
    owner recipients (age)."""

    device_id: str
    identity_pub: str
    transport_recipient: str
    owner_recipient: str | None


def upsert_device(session: Session, record: DeviceRecord, revoked_at: datetime | None,
                  now: datetime) -> None:
    """Insert or update the device's row (revoked at `revoked_at`, or not revoked when
    None) and make sure its ``seq`` counter exists."""
    row = session.get(Device, record.device_id)
    if row is None:
        row = Device(id=record.device_id, synced_at=now)
        session.add(row)
    row.identity_pub = record.identity_pub
    row.transport_recipient = record.transport_recipient
    row.owner_recipient = record.owner_recipient
    row.revoked_at = revoked_at
    row.synced_at = now
    session.flush()
    ensure_counter(session, record.device_id)
