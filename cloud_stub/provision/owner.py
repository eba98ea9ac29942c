"""`cloud-stub devices owner-cert DEVICE_ID [--out DIR] [--replace]`.

Issues the owner MQTT credential (CN ``owner.<id>``) that `devices enroll` issues, for a
device that has none (one enrolled before owner credentials existed: its record has no
``owner-mqtt.pem`` and there is no owner bundle), or, with ``replace``, a new one in
place of a lost one. It writes the owner bundle with enrolment's own code
(`enroll.owner_bundle_files`) to ``devices/<id>/owner/`` or `out_dir`, then the record's
``owner-mqtt.pem``, then renders the broker ACL from the registry (`write_broker_acl`),
all under the registry lock.

``replace`` first revokes the owner certificate in force as `devices revoke
--owner-only` does (`revoke.revoke_locked`: the serial goes into ``revoked.json`` and
the CA-signed CRL, kept there for good), so the lost bundle is refused at the TLS
handshake once the broker restarts; the new certificate's serial is not in the record,
so its owner gets the ACL stanza back (`revocations.owner_in_service`). A default owner
bundle left from the old credential is removed: its key is revoked.

Refused, with nothing written: an id that is not enrolled (`NotEnrolled`), a revoked
device (`DeviceRevoked`), a device with an owner certificate already and no ``replace``
(`AlreadyExists`), an output that is not empty. A failure while writing removes the new
bundle and certificate and renders the ACL again; a revocation already written stays
(running the command again with ``replace`` finishes the job).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from cloud_stub.provision.ca import CertificateAuthority
from cloud_stub.provision.deployment import registry_lock, write_broker_acl_locked
from cloud_stub.provision.enroll import (
    load_settings,
    owner_bundle_files,
    read_public,
    remove_output,
    write_bundle_dir,
)
from cloud_stub.provision.errors import AlreadyExists, DeviceRevoked
from cloud_stub.provision.keys import PUBLIC_MODE, check_empty_dir, write_atomic
from cloud_stub.provision.names import owner_mqtt_user
from cloud_stub.provision.revocations import Revocation, Scope, cert_serial, read_revocation
from cloud_stub.provision.revoke import (
    broker_config_names_crl,
    check_enrolled,
    check_reason,
    revoke_locked,
)
from protocol.bundle import DeploymentLayout, OwnerBundleLayout

REPLACE_REASON = "owner credential replaced (devices owner-cert --replace)"


@dataclass(frozen=True, slots=True)
class OwnerCredential:
    """What `issue_owner_credential` did. `revocation` is the record that revoked the
    replaced certificate (None when nothing was replaced); `replaced` its serial."""

    device_id: str
    serial: int
    owner_bundle: OwnerBundleLayout
    acl: Path
    replaced: int | None
    revocation: Revocation | None
    crl: Path | None
    config_names_crl: bool


def issue_owner_credential(
    layout: DeploymentLayout, device_id: str, *, now: dt.datetime,
    out_dir: Path | None = None, replace: bool = False, reason: str = REPLACE_REASON,
) -> OwnerCredential:
    """Issue `device_id`'s owner certificate and bundle; see the module's description.

    Raises InvalidName (id, reason), NotEnrolled, DeviceRevoked, AlreadyExists,
    DeploymentError (deployment or a record unreadable) and WriteError.
    """
    user = owner_mqtt_user(device_id)  # also checks the id
    reason = check_reason(reason)
    settings = load_settings(layout)
    ca = CertificateAuthority.load(layout.ca_cert, layout.ca_key)
    ca_pem = read_public(layout.ca_cert)
    default_root = layout.owner_bundle(device_id).root
    root = out_dir if out_dir is not None else default_root
    with registry_lock(layout):
        check_enrolled(layout, device_id)
        existing = read_revocation(layout, device_id)
        if existing is not None and existing.scope is Scope.DEVICE:
            raise DeviceRevoked(
                f"device {device_id!r} was revoked at {existing.at.isoformat()} "
                f"({existing.reason}); no owner credential is issued to a revoked device"
            )
        owner_cert = layout.owner_mqtt_cert(device_id)
        old_serial = cert_serial(owner_cert) if owner_cert.exists() else None
        if old_serial is not None and not replace:
            raise AlreadyExists(
                f"device {device_id!r} has an owner credential already ({owner_cert}, "
                f"serial {old_serial:x}); give --replace to revoke it and issue a new one"
            )
        clear_default = replace and root == default_root and default_root.exists()
        if not clear_default:
            check_empty_dir(root, "an owner bundle")
        created = not root.exists() or clear_default

        revocation: Revocation | None = None
        crl: Path | None = None
        if old_serial is not None:
            revocation, _changed, crl = revoke_locked(
                layout, device_id, reason=reason, scope=Scope.OWNER, now=now, ca=ca)
        issued = ca.issue_client(common_name=user, now=now)
        record_written = False
        try:
            if clear_default:
                shutil.rmtree(default_root)
            write_bundle_dir(root, owner_bundle_files(device_id, issued, ca_pem, settings))
            # Last: from here the ACL names the owner with this certificate.
            write_atomic(owner_cert, issued.cert_pem, mode=PUBLIC_MODE, overwrite=True)
            record_written = True
            acl = write_broker_acl_locked(layout, settings.prefix)
        except BaseException:
            remove_output(root, created=created)
            if record_written:
                with contextlib.suppress(OSError):
                    owner_cert.unlink()
            with contextlib.suppress(Exception):
                write_broker_acl_locked(layout, settings.prefix)
            raise
    return OwnerCredential(
        device_id=device_id, serial=issued.cert.serial_number,
        owner_bundle=OwnerBundleLayout(root), acl=acl, replaced=old_serial,
        revocation=revocation, crl=crl, config_names_crl=broker_config_names_crl(layout),
    )
