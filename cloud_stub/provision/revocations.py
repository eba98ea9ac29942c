"""The revocation records, ``devices/<id>/revoked.json``, read back: what
`cloud_stub.provision.revoke` writes, and what the broker ACL (`owner_in_service`), the
owner credential and the cloud's registry read.

A record that cannot be read back is never taken as "not revoked": `read_revocation`
raises, and `owner_in_service` counts it as revoked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509

from cloud_stub.provision.errors import DeploymentError
from protocol.bundle import DeploymentLayout

REVOCATION_FILE = "revoked.json"
MAX_RECORD = 64 * 1024


def revocation_path(layout: DeploymentLayout, device_id: str) -> Path:
    """``devices/<id>/revoked.json``: written by `cloud_stub.provision.revoke`."""
    return layout.device_record(device_id) / REVOCATION_FILE


class Scope(StrEnum):
    DEVICE = "device"  # the device's certificate and its owner's
    OWNER = "owner"  # the owner's certificate only


@dataclass(frozen=True, slots=True)
class Revocation:
    """One ``revoked.json``."""

    device_id: str
    at: dt.datetime
    reason: str
    scope: Scope
    serials: tuple[int, ...]
    history: tuple[dict[str, Any], ...] = ()  # earlier, narrower revocations it replaced

    def to_json(self) -> bytes:
        document = {
            "device_id": self.device_id,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "scope": self.scope.value,
            "serials": [f"{s:x}" for s in self.serials],
            "history": list(self.history),
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def read_revocation(layout: DeploymentLayout, device_id: str) -> Revocation | None:
    """The device's ``revoked.json``, or None when there is none.

    Raises DeploymentError when the file exists but cannot be read or parsed.
    """
    path = revocation_path(layout, device_id)
    if not os.path.lexists(path):
        return None
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RECORD + 1)
        if len(raw) > MAX_RECORD:
            raise ValueError("too large")
        doc = json.loads(raw)
        at = dt.datetime.fromisoformat(str(doc["at"]))
        if at.tzinfo is None:
            raise ValueError("'at' has no time zone")
        history = doc.get("history", [])
        if not isinstance(history, list):
            raise ValueError("'history' is not a list")
        return Revocation(
            device_id=device_id,
            at=at,
            reason=str(doc["reason"]),
            scope=Scope(doc["scope"]),
            serials=tuple(int(str(s), 16) for s in doc["serials"]),
            history=tuple(dict(h) for h in history),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DeploymentError(f"{path}: cannot read the revocation record: {exc}") from exc


def cert_serial(path: Path) -> int:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).serial_number
    except (OSError, ValueError) as exc:
        raise DeploymentError(f"{path}: cannot read the certificate: {exc}") from exc


def owner_in_service(layout: DeploymentLayout, device_id: str) -> bool:
    """Whether the owner certificate in force (``owner-mqtt.pem``) keeps its ACL stanza:
    True without a ``revoked.json``; with one, only when it can be read, revokes the
    owner alone (scope ``owner``) and does not list that certificate's serial, which is
    the case once `devices owner-cert --replace` issued a new certificate after an
    owner-only revocation. A record or certificate that cannot be read counts as revoked."""
    if not os.path.lexists(revocation_path(layout, device_id)):
        return True
    try:
        record = read_revocation(layout, device_id)
        serial = cert_serial(layout.owner_mqtt_cert(device_id))
    except DeploymentError:
        return False
    return record is not None and record.scope is Scope.OWNER and serial not in record.serials
