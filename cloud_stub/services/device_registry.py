"""The device registry: synced from the deployment directory's public device records.

This module reads the files; the store keeps what they say (`cloud_stub.store.devices`).

``devices/<id>/identity.pub`` (hex Ed25519), ``transport.pub`` and ``owner.pub`` (age
recipients) are what enrolment writes; the store mirrors them so that queries and
foreign keys can use them. A record with a malformed key is skipped and reported, never
half-imported. ``revoked.json`` (`cloud-stub devices revoke`) of scope ``device`` sets
``revoked_at``; one of scope ``owner`` revokes only the owner's MQTT certificate and
leaves the device in service. A ``revoked.json`` that cannot be read counts as a device
revocation at the time of the sync: a damaged record never brings a device back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from cloud_stub.provision.errors import DeploymentError
from cloud_stub.provision.revocations import Scope, read_revocation
from cloud_stub.store.devices import DeviceRecord, upsert_device
from protocol.bundle import DeploymentLayout

_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_RECIPIENT = re.compile(r"^age1[0-9a-z]{58}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True, slots=True)
class SyncReport:
    synced: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (device id, why)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def read_revoked_at(layout: DeploymentLayout, device_id: str, now: datetime
                    ) -> datetime | None:
    """When the device was revoked (scope ``device``), else None. An unreadable or
    malformed ``revoked.json`` gives `now`: fail closed."""
    try:
        record = read_revocation(layout, device_id)
    except DeploymentError:
        return now
    if record is None or record.scope is Scope.OWNER:
        return None
    return record.at


def read_device_record(record_dir: Path) -> DeviceRecord:
    """Read one ``devices/<id>/`` record. Raises ValueError naming the bad file."""
    device_id = record_dir.name
    if not _DEVICE_ID.match(device_id):
        raise ValueError(f"device id {device_id!r} is not a valid id")
    try:
        identity = _read(record_dir / "identity.pub").lower()
        transport = _read(record_dir / "transport.pub")
        owner_path = record_dir / "owner.pub"
        owner = _read(owner_path) if owner_path.exists() else None
    except OSError as exc:
        raise ValueError(f"{record_dir}: {exc}") from exc
    if not _HEX32.match(identity):
        raise ValueError(f"{record_dir / 'identity.pub'}: not 32 bytes of hex")
    if not _RECIPIENT.match(transport):
        raise ValueError(f"{record_dir / 'transport.pub'}: not an age recipient")
    if owner is not None and not _RECIPIENT.match(owner):
        raise ValueError(f"{owner_path}: not an age recipient")
    return DeviceRecord(device_id, identity, transport, owner)


def sync_devices(session: Session, layout: DeploymentLayout, now: datetime) -> SyncReport:
    """Upsert every readable device record; report the ones skipped and why."""
    synced: list[str] = []
    skipped: list[tuple[str, str]] = []
    if not layout.devices_dir.is_dir():
        return SyncReport((), ())
    for record_dir in sorted(p for p in layout.devices_dir.iterdir() if p.is_dir()):
        try:
            record = read_device_record(record_dir)
        except ValueError as exc:
            skipped.append((record_dir.name, str(exc)))
            continue
        upsert_device(session, record, read_revoked_at(layout, record_dir.name, now), now)
        synced.append(record.device_id)
    return SyncReport(tuple(synced), tuple(skipped))
