"""`cloud-stub devices revoke DEVICE_ID --reason TEXT [--owner-only]`.

Cuts a lost or stolen doorbell, or a lost owner credential, off the broker:

1. ``devices/<id>/revoked.json`` (0644, written atomically) records ``at``, ``reason``,
   ``scope`` and the revoked certificates' ``serials`` (lowercase hex). Scope ``device``
   revokes the device's MQTT certificate (``mqtt.pem``) and its owner's
   (``owner-mqtt.pem``); scope ``owner`` only the owner's.
2. ``broker/crl.pem`` is signed again by the deployment CA from every ``revoked.json``
   (`write_crl`); mosquitto refuses a listed certificate at the TLS handshake: after a
   SIGHUP for new connections only, so the operator restarts it to drop a session the
   revoked client already holds (`tests/integration/test_revoke.py` shows both).
3. ``broker/acl`` is rendered again without the revoked owner's stanza
   (`write_broker_acl` skips every owner whose certificate in force a ``revoked.json``
   revokes, `owner_in_service`; after an owner-only revocation, `devices owner-cert
   --replace` issues a new owner certificate that gets the stanza back while the old
   serial stays in the CRL).

Revoking again is idempotent: the first record stays as it was (its time and reason),
the CRL and ACL are rendered again (which repairs a run that stopped part-way), and the
result says nothing changed. The one exception widens: an owner-only revocation followed
by a device revocation becomes a device revocation, keeping the first time and reason
beside the new ones. An id that is not enrolled is refused (`NotEnrolled`).

A record that cannot be read back is never taken as "not revoked": `write_crl` refuses
to render without it (`DeploymentError`), and the ACL and the cloud's registry treat
any ``revoked.json`` as revoked.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_stub.config import load_deployment
from cloud_stub.errors import ConfigError
from cloud_stub.provision.ca import CertificateAuthority
from cloud_stub.provision.deployment import BrokerPaths, registry_lock, write_broker_acl_locked
from cloud_stub.provision.errors import DeploymentError, InvalidName, NotEnrolled
from cloud_stub.provision.keys import PUBLIC_MODE, write_atomic
from cloud_stub.provision.names import check_device_id
from cloud_stub.provision.revocations import (
    Revocation,
    Scope,
    cert_serial,
    read_revocation,
    revocation_path,
)
from protocol.bundle import DeploymentLayout

MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """What `revoke_device` did: `changed` is False when the record already covered it."""

    revocation: Revocation
    changed: bool
    crl: Path
    acl: Path
    config_names_crl: bool  # False: broker/mosquitto.conf predates CRLs; add `crlfile`


def all_revocations(layout: DeploymentLayout) -> list[Revocation]:
    """Every ``devices/*/revoked.json``. Raises DeploymentError for an unreadable one."""
    try:
        names = sorted(p.name for p in layout.devices_dir.iterdir() if p.is_dir())
    except OSError as exc:
        raise DeploymentError(f"{layout.devices_dir}: cannot list: {exc.strerror or exc}") from exc
    return [r for r in (read_revocation(layout, n) for n in names) if r is not None]


def write_crl(layout: DeploymentLayout, *, now: dt.datetime,
              ca: CertificateAuthority | None = None,
              pending: Revocation | None = None) -> Path:
    """Sign ``broker/crl.pem`` again from every revocation record, and from `pending`, a
    record about to be written; return its path. Each serial is listed with its earliest
    revocation time.

    Raises DeploymentError (CA or a record unreadable) and WriteError.
    """
    ca = ca or CertificateAuthority.load(layout.ca_cert, layout.ca_key)
    records = all_revocations(layout) + ([pending] if pending is not None else [])
    revoked: dict[int, dt.datetime] = {}
    for record in records:
        for serial in record.serials:
            revoked[serial] = min(record.at, revoked.get(serial, record.at))
    number = int(now.timestamp() * 1_000_000)  # grows with every rendering
    path = BrokerPaths(layout).crl
    data = ca.issue_crl(sorted(revoked.items()), now=now, number=number)
    write_atomic(path, data, mode=PUBLIC_MODE, overwrite=True)
    return path


def check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON or not reason.isprintable():
        raise InvalidName(
            f"give a reason of 1 to {MAX_REASON} printable characters (--reason)"
        )
    return reason


def broker_config_names_crl(layout: DeploymentLayout) -> bool:
    paths = BrokerPaths(layout)
    try:
        text = paths.config.read_text(encoding="utf-8")
    except OSError:
        return False
    target = paths.crl.resolve()
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "crlfile" and Path(words[1]).resolve() == target:
            return True
    return False


def check_enrolled(layout: DeploymentLayout, device_id: str) -> Path:
    """The device's MQTT certificate in its record. Raises NotEnrolled without one."""
    device_cert = layout.device_record(device_id) / "mqtt.pem"
    if layout.device_record(device_id).is_symlink() or not device_cert.is_file():
        raise NotEnrolled(f"device {device_id!r} is not enrolled (no {device_cert})")
    return device_cert


def revoke_locked(layout: DeploymentLayout, device_id: str, *, reason: str, scope: Scope,
                  now: dt.datetime, ca: CertificateAuthority) -> tuple[Revocation, bool, Path]:
    """The revocation of `revoke_device` for a caller that holds `registry_lock` and has
    checked the id and reason: sign the CRL and write ``revoked.json``; the caller renders
    the ACL. Returns the record, whether it changed, and the CRL's path."""
    device_cert = check_enrolled(layout, device_id)
    owner_cert = layout.owner_mqtt_cert(device_id)
    existing = read_revocation(layout, device_id)
    wanted: list[int] = []
    if scope is Scope.DEVICE:
        wanted.append(cert_serial(device_cert))
    if owner_cert.is_file():
        wanted.append(cert_serial(owner_cert))
    elif scope is Scope.OWNER:
        raise NotEnrolled(f"device {device_id!r} has no owner certificate ({owner_cert})")
    if existing is not None and set(wanted) <= set(existing.serials):
        revocation, changed = existing, False
    else:
        history: tuple[dict[str, Any], ...] = ()
        if existing is not None:  # an earlier revocation, widened or of an older owner
            history = (*existing.history, {
                "at": existing.at.isoformat(), "reason": existing.reason,
                "scope": existing.scope.value,
            })
        serials = tuple(sorted(set(wanted) | set(existing.serials if existing else ())))
        revocation = Revocation(device_id=device_id, at=now, reason=reason, scope=scope,
                                serials=serials, history=history)
        changed = True
    # CRL first, then the record: a failure in between leaves a certificate refused
    # without its record (a new `revoke` writes the record), never the reverse.
    crl = write_crl(layout, now=now, ca=ca, pending=revocation if changed else None)
    if changed:
        write_atomic(revocation_path(layout, device_id), revocation.to_json(),
                     mode=PUBLIC_MODE, overwrite=True)
    return revocation, changed, crl


def revoke_device(layout: DeploymentLayout, device_id: str, *, reason: str, scope: Scope,
                  now: dt.datetime) -> RevokeResult:
    """Revoke `device_id`'s certificates of `scope`, then render the CRL and the ACL.

    Raises InvalidName (id, reason), NotEnrolled (no such device, or no owner certificate
    to revoke), DeploymentError (deployment unreadable) and WriteError.
    """
    check_device_id(device_id)
    reason = check_reason(reason)
    try:
        settings = load_deployment(layout)
    except ConfigError as exc:
        raise DeploymentError(str(exc)) from exc
    ca = CertificateAuthority.load(layout.ca_cert, layout.ca_key)
    with registry_lock(layout):
        revocation, changed, crl = revoke_locked(layout, device_id, reason=reason,
                                                 scope=scope, now=now, ca=ca)
        acl = write_broker_acl_locked(layout, settings.prefix)
    return RevokeResult(revocation=revocation, changed=changed, crl=crl, acl=acl,
                        config_names_crl=broker_config_names_crl(layout))
