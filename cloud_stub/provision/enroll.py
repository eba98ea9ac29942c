"""`cloud-stub devices enroll DEVICE_ID --owner-recipient age1...`.

Generates the device's Ed25519 identity key, its age transport identity, its MQTT
client certificate (CN = device id) and the owner's MQTT client certificate
(CN ``owner.<id>``), then writes:

- the device bundle (`protocol.bundle.BundleLayout`): a directory (default
  ``devices/<id>/bundle/``, or ``--out``) or a tarball (``--tar``, one top-level
  directory named after the device). Private files are 0600 from creation; the tarball
  as a whole is a private file.
- the owner bundle (`protocol.bundle.OwnerBundleLayout`): a directory (default
  ``devices/<id>/owner/``, or ``--owner-out``) with the owner's certificate and key, the
  CA certificate, ``device-id`` and ``owner.toml`` (prefix, broker, the notice and status
  topics). The owner reads that device's notices and status and nothing else.
- the cloud's public record ``devices/<id>/``: ``identity.pub`` (hex), ``transport.pub``,
  ``owner.pub``, ``mqtt.pem``, and last ``owner-mqtt.pem``.
- the broker's ACL, rendered again from the device registry with this device's owner
  (`deployment.write_broker_acl`); the broker applies it once it is reloaded.

The device bundle holds only device keys and public material of the deployment (CA
certificate, trust root, escrow recipient); the owner bundle only the owner's key and the
CA certificate: never a cloud private key, and neither holds the other's key. A device
id that is enrolled already, or an output that exists, is refused before anything is
written; a failure part-way removes what this enrolment wrote.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from cloud_stub.config import DeploymentSettings, load_deployment
from cloud_stub.errors import ConfigError
from cloud_stub.provision.agent_config import (
    DEFAULT_INSTALL_DIR,
    AgentConfigValues,
    render_agent_config,
)
from cloud_stub.provision.ca import CertificateAuthority, IssuedCert
from cloud_stub.provision.deployment import write_broker_acl
from cloud_stub.provision.device_certs import device_certificate
from cloud_stub.provision.errors import (
    AlreadyExists,
    DeploymentError,
    InvalidName,
    ProvisionError,
)
from cloud_stub.provision.keys import (
    PRIVATE_DIR_MODE,
    PRIVATE_MODE,
    PUBLIC_MODE,
    check_empty_dir,
    is_age_recipient,
    make_dir,
    new_age_key,
    new_signer_key,
    write_atomic,
    write_private,
    write_public,
)
from cloud_stub.provision.log_enrolment import DEVICE_CHECKPOINT_FILE, enrolment_log
from cloud_stub.provision.names import owner_mqtt_user
from protocol.bundle import BundleLayout, DeploymentLayout, OwnerBundleLayout
from protocol.topics import DeviceTopics
from release_log.client import LogClientError

MAX_PUBLIC_FILE = 64 * 1024  # CA certificate, trust root, recipient: all a few KiB


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollOptions:
    """What `devices enroll` asks for; `out_dir` and `tar_path` are exclusive, and
    `owner_out` may neither be nor hold nor lie inside the device bundle's directory."""

    owner_recipient: str
    out_dir: Path | None = None
    tar_path: Path | None = None
    owner_out: Path | None = None
    install_dir: Path = DEFAULT_INSTALL_DIR
    state_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Where the enrolment went: the cloud's record, the bundle (a directory or tar), the
    owner bundle and the broker ACL that now names the owner (reload the broker)."""

    device_id: str
    record: Path
    bundle: BundleLayout | None
    tar_path: Path | None
    owner_bundle: OwnerBundleLayout
    acl: Path
    certified: bool = True  # False: the root keys are offline (`cloud-stub root certify`)


@dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    data: bytes
    mode: int


def read_public(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PUBLIC_FILE + 1)
    except OSError as exc:
        raise DeploymentError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_PUBLIC_FILE:
        raise DeploymentError(f"{path}: larger than {MAX_PUBLIC_FILE} bytes")
    return data


def _check_owner(recipient: str) -> str:
    recipient = recipient.strip()
    if not recipient.startswith("age1") or not is_age_recipient(recipient):
        raise InvalidName(
            f"owner recipient {recipient[:80]!r} is not an age X25519 recipient (age1...)"
        )
    return recipient


def _overlap(a: Path, b: Path) -> bool:
    """True when `a` and `b` are the same directory or one lies inside the other."""
    a, b = Path(os.path.abspath(a)), Path(os.path.abspath(b))
    return a == b or a in b.parents or b in a.parents


def _check_output(options: EnrollOptions, bundle_root: Path | None, owner_root: Path) -> None:
    if options.out_dir is not None and options.tar_path is not None:
        raise InvalidName("give either an output directory or a tarball, not both")
    if options.tar_path is not None and (
        options.tar_path.exists() or options.tar_path.is_symlink()
    ):
        raise AlreadyExists(f"{options.tar_path} exists already; refusing to overwrite it")
    if options.out_dir is not None:
        check_empty_dir(options.out_dir, "a bundle")
    if options.owner_out is not None:
        check_empty_dir(options.owner_out, "a bundle")
    if bundle_root is not None and _overlap(bundle_root, owner_root):
        raise InvalidName(
            f"the owner bundle {owner_root} and the device bundle {bundle_root} must be "
            "separate directories: the device must never receive the owner's key"
        )


def _tarball(device_id: str, files: list[BundleFile], now: dt.datetime) -> bytes:
    buffer = io.BytesIO()
    mtime = int(now.timestamp())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = tarfile.TarInfo(device_id)
        top.type = tarfile.DIRTYPE
        top.mode = PRIVATE_DIR_MODE
        top.mtime = mtime
        tar.addfile(top)
        for item in files:
            info = tarfile.TarInfo(f"{device_id}/{item.name}")
            info.size = len(item.data)
            info.mode = item.mode
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(item.data))
    return buffer.getvalue()


def write_bundle_dir(root: Path, files: list[BundleFile]) -> None:
    make_dir(root, mode=PRIVATE_DIR_MODE)
    for item in files:
        if (root / item.name).parent != root:  # the owner's `release-log/` files
            make_dir((root / item.name).parent, mode=PRIVATE_DIR_MODE)
        write_atomic(root / item.name, item.data, mode=item.mode)


def remove_output(root: Path, *, created: bool) -> None:
    """Undo a bundle directory: remove it when this enrolment created it, else empty it
    (it was empty before: `_check_output` refused anything else)."""
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink()


def _owner_config(device_id: str, user: str, prefix: str, host: str, port: int) -> bytes:
    """``owner.toml``: where the owner's application connects and what it reads."""
    topics = DeviceTopics(device_id, prefix)
    document: dict[str, Any] = {
        "prefix": prefix,
        "broker": {"host": host, "port": port},
        "topics": {"notice": topics.notice, "status": topics.status},
    }
    header = (
        f"# sealed-doorbell owner credential for device {device_id}.\n"
        "# Written by `cloud-stub devices enroll` or `devices owner-cert`. Connect over TLS\n"
        f"# trusting ca.pem with mqtt.pem and mqtt.key beside this file (MQTT user {user});\n"
        "# the broker lets this identity read the two topics below and nothing else.\n\n"
    )
    return (header + tomli_w.dumps(document)).encode("utf-8")


def owner_bundle_files(device_id: str, owner_mqtt: IssuedCert, ca_pem: bytes,
                       settings: DeploymentSettings) -> list[BundleFile]:
    """The files of an owner bundle (`OwnerBundleLayout`) for `owner_mqtt`, a certificate
    issued to `owner_mqtt_user(device_id)`: what enrolment and `devices owner-cert` write."""
    names = OwnerBundleLayout(Path("."))
    return [
        BundleFile(names.device_id_file.name, f"{device_id}\n".encode(), PUBLIC_MODE),
        BundleFile(names.mqtt_cert.name, owner_mqtt.cert_pem, PUBLIC_MODE),
        BundleFile(names.mqtt_key.name, owner_mqtt.key_pem, PRIVATE_MODE),
        BundleFile(names.ca_cert.name, ca_pem, PUBLIC_MODE),
        BundleFile(
            names.config.name,
            _owner_config(device_id, owner_mqtt_user(device_id), settings.prefix,
                          settings.broker.host, settings.broker.port),
            PUBLIC_MODE,
        ),
    ]


def load_settings(layout: DeploymentLayout) -> DeploymentSettings:
    """``deployment.toml``. Raises DeploymentError when it is missing or ill-formed."""
    try:
        return load_deployment(layout)
    except ConfigError as exc:
        raise DeploymentError(str(exc)) from exc


def enroll_device(
    layout: DeploymentLayout, device_id: str, options: EnrollOptions, *, now: dt.datetime
) -> Enrollment:
    """Enrol `device_id` in the deployment at `layout`.

    Raises InvalidName (device id, owner recipient, conflicting outputs), AlreadyExists
    (device enrolled, output present), DeploymentError (deployment missing or unreadable)
    and WriteError (disk refused; this enrolment's files are removed).
    """
    owner_user = owner_mqtt_user(device_id)  # also checks the id
    owner = _check_owner(options.owner_recipient)
    bundle_root = options.out_dir or layout.device_bundle(device_id).root
    owner_root = options.owner_out or layout.owner_bundle(device_id).root
    _check_output(options, None if options.tar_path is not None else bundle_root, owner_root)
    settings = load_settings(layout)
    ca = CertificateAuthority.load(layout.ca_cert, layout.ca_key)
    ca_pem = read_public(layout.ca_cert)
    trust_root = read_public(layout.trust_root)
    try:  # a deployment with a release log: its policy and first checkpoint (ADR 0014)
        release_log = enrolment_log(trust_root, now=now)
    except LogClientError as exc:
        raise DeploymentError(f"release log: {exc}") from exc
    escrow = read_public(layout.escrow_recipient).decode("ascii", "replace").strip()
    if not is_age_recipient(escrow):
        raise DeploymentError(f"{layout.escrow_recipient}: not an age recipient")
    if not layout.devices_dir.is_dir():
        raise DeploymentError(f"{layout.devices_dir}: missing; is this a deployment directory?")

    record = layout.device_record(device_id)
    try:
        make_dir(record, exist_ok=False)
    except AlreadyExists as exc:
        raise AlreadyExists(f"device {device_id!r} is enrolled already ({record})") from exc

    created_out = options.out_dir is not None and not options.out_dir.exists()
    created_owner_out = options.owner_out is not None and not options.owner_out.exists()
    acl_touched = False
    try:
        identity = new_signer_key()
        transport = new_age_key()
        mqtt = ca.issue_client(common_name=device_id, now=now)
        owner_mqtt = ca.issue_client(common_name=owner_user, now=now)
        config = render_agent_config(
            AgentConfigValues(
                device_id=device_id,
                install_dir=options.install_dir,
                state_dir=options.state_dir,
                prefix=settings.prefix,
                broker_host=settings.broker.host,
                broker_port=settings.broker.port,
                owner_recipient=owner,
                escrow_recipient=escrow,
            )
        )
        names = BundleLayout(Path("."))
        files = [
            BundleFile(names.device_id_file.name, f"{device_id}\n".encode(), PUBLIC_MODE),
            BundleFile(names.identity_key.name, identity.pem, PRIVATE_MODE),
            BundleFile(names.identity_pub.name, f"{identity.public_hex}\n".encode(), PUBLIC_MODE),
            BundleFile(names.transport_identity.name, transport.identity_file, PRIVATE_MODE),
            BundleFile(names.transport_recipient.name, transport.recipient_file, PUBLIC_MODE),
            BundleFile(names.mqtt_cert.name, mqtt.cert_pem, PUBLIC_MODE),
            BundleFile(names.mqtt_key.name, mqtt.key_pem, PRIVATE_MODE),
            BundleFile(names.ca_cert.name, ca_pem, PUBLIC_MODE),
            BundleFile(names.trust_root.name, trust_root, PUBLIC_MODE),
            BundleFile(names.escrow_recipient.name, f"{escrow}\n".encode(), PUBLIC_MODE),
            BundleFile(names.owner_recipient.name, f"{owner}\n".encode(), PUBLIC_MODE),
            BundleFile(names.config.name, config, PUBLIC_MODE),
        ]
        owner_files = owner_bundle_files(device_id, owner_mqtt, ca_pem, settings)
        if release_log is not None:
            files.append(BundleFile(DEVICE_CHECKPOINT_FILE, release_log.checkpoint,
                                    PUBLIC_MODE))
            owner_files += [BundleFile(name, data, PUBLIC_MODE) for name, data
                            in release_log.owner_files(identity.public_hex).items()]
        if options.tar_path is not None:
            write_private(options.tar_path, _tarball(device_id, files, now))
            bundle = None
        else:
            write_bundle_dir(bundle_root, files)
            bundle = BundleLayout(bundle_root)
        write_bundle_dir(owner_root, owner_files)
        write_public(record / "identity.pub", f"{identity.public_hex}\n".encode())
        write_public(record / "transport.pub", transport.recipient_file)
        write_public(record / "owner.pub", f"{owner}\n".encode())
        write_public(record / "mqtt.pem", mqtt.cert_pem)
        # The agency's proof of this identity key, made here while the root keys are on
        # this host (cloud_stub/provision/device_certs.py; ADR 0013 moves them offline after init).
        certified = device_certificate(layout, device_id, identity.public_hex, now) is not None
        # Last in the record: the registry counts a device with this file as enrolled.
        write_public(layout.owner_mqtt_cert(device_id), owner_mqtt.cert_pem)
        acl_touched = True
        acl = write_broker_acl(layout, settings.prefix)
    except BaseException:
        shutil.rmtree(record, ignore_errors=True)
        if acl_touched:  # the ACL may name this owner already: render it without
            with contextlib.suppress(ProvisionError):
                write_broker_acl(layout, settings.prefix)
        if options.out_dir is not None:
            remove_output(options.out_dir, created=created_out)
        if options.owner_out is not None:
            remove_output(options.owner_out, created=created_owner_out)
        if options.tar_path is not None:
            with contextlib.suppress(OSError):
                options.tar_path.unlink()
        raise
    return Enrollment(device_id=device_id, record=record, bundle=bundle,
                      tar_path=options.tar_path, owner_bundle=OwnerBundleLayout(owner_root),
                      acl=acl, certified=certified)
