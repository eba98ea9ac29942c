"""`cloud-stub devices enroll DEVICE_ID --owner-recipient age1...`.

Generates the device's Ed25519 identity key, its age transport identity and its MQTT
client certificate (CN = device id), then writes:

- the device bundle (`protocol.bundle.BundleLayout`): a directory (default
  ``devices/<id>/bundle/``, or ``--out``) or a tarball (``--tar``, one top-level
  directory named after the device). Private files are 0600 from creation; the tarball
  as a whole is a private file.
- the cloud's public record ``devices/<id>/``: ``identity.pub`` (hex), ``transport.pub``,
  ``owner.pub``, ``mqtt.pem``.

The bundle holds only device keys and public material of the deployment (CA
certificate, trust root, escrow recipient): never a cloud private key. A device id that
is enrolled already, or an output that exists, is refused before anything is written;
a failure part-way removes what this enrolment wrote.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cloud_stub.config import load_deployment
from cloud_stub.errors import ConfigError
from cloud_stub.provision.agent_config import (
    DEFAULT_INSTALL_DIR,
    AgentConfigValues,
    render_agent_config,
)
from cloud_stub.provision.ca import CertificateAuthority
from cloud_stub.provision.errors import AlreadyExists, DeploymentError, InvalidName
from cloud_stub.provision.keys import (
    PRIVATE_DIR_MODE,
    PRIVATE_MODE,
    PUBLIC_MODE,
    is_age_recipient,
    make_dir,
    new_age_key,
    new_signer_key,
    write_atomic,
    write_private,
    write_public,
)
from cloud_stub.provision.names import check_device_id
from protocol.bundle import BundleLayout, DeploymentLayout

MAX_PUBLIC_FILE = 64 * 1024  # CA certificate, trust root, recipient: all a few KiB


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollOptions:
    """What `devices enroll` asks for; `out_dir` and `tar_path` are exclusive."""

    owner_recipient: str
    out_dir: Path | None = None
    tar_path: Path | None = None
    install_dir: Path = DEFAULT_INSTALL_DIR
    state_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Where the enrolment went: the cloud's record and the bundle (a directory or tar)."""

    device_id: str
    record: Path
    bundle: BundleLayout | None
    tar_path: Path | None


@dataclass(frozen=True, slots=True)
class BundleFile:
    name: str
    data: bytes
    mode: int


def _read_public(path: Path) -> bytes:
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


def _check_output(options: EnrollOptions) -> None:
    if options.out_dir is not None and options.tar_path is not None:
        raise InvalidName("give either an output directory or a tarball, not both")
    if options.tar_path is not None and (
        options.tar_path.exists() or options.tar_path.is_symlink()
    ):
        raise AlreadyExists(f"{options.tar_path} exists already; refusing to overwrite it")
    if options.out_dir is not None:
        out = options.out_dir
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise AlreadyExists(f"{out} exists and is not a directory; refusing to overwrite it")
        if out.is_dir() and any(out.iterdir()):
            raise AlreadyExists(f"{out} is not empty; refusing to overwrite a bundle")


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


def _write_bundle_dir(root: Path, files: list[BundleFile]) -> None:
    make_dir(root, mode=PRIVATE_DIR_MODE)
    for item in files:
        write_atomic(root / item.name, item.data, mode=item.mode)


def enroll_device(
    layout: DeploymentLayout, device_id: str, options: EnrollOptions, *, now: dt.datetime
) -> Enrollment:
    """Enrol `device_id` in the deployment at `layout`.

    Raises InvalidName (device id, owner recipient, conflicting outputs), AlreadyExists
    (device enrolled, output present), DeploymentError (deployment missing or unreadable)
    and WriteError (disk refused; this enrolment's files are removed).
    """
    check_device_id(device_id)
    owner = _check_owner(options.owner_recipient)
    _check_output(options)
    try:
        settings = load_deployment(layout)
    except ConfigError as exc:
        raise DeploymentError(str(exc)) from exc
    ca = CertificateAuthority.load(layout.ca_cert, layout.ca_key)
    ca_pem = _read_public(layout.ca_cert)
    trust_root = _read_public(layout.trust_root)
    escrow = _read_public(layout.escrow_recipient).decode("ascii", "replace").strip()
    if not is_age_recipient(escrow):
        raise DeploymentError(f"{layout.escrow_recipient}: not an age recipient")
    if not layout.devices_dir.is_dir():
        raise DeploymentError(f"{layout.devices_dir}: missing; is this a deployment directory?")

    record = layout.device_record(device_id)
    try:
        make_dir(record, exist_ok=False)
    except AlreadyExists as exc:
        raise AlreadyExists(f"device {device_id!r} is enrolled already ({record})") from exc

    bundle_root = options.out_dir or layout.device_bundle(device_id).root
    created_out = options.out_dir is not None and not options.out_dir.exists()
    try:
        identity = new_signer_key()
        transport = new_age_key()
        mqtt = ca.issue_client(common_name=device_id, now=now)
        config = render_agent_config(
            AgentConfigValues(
                device_id=device_id,
                install_dir=options.install_dir,
                state_dir=options.state_dir,
                prefix=settings.prefix,
                broker_host=settings.broker.host,
                broker_port=settings.broker.port,
                cloud_url=settings.api.url,
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
        if options.tar_path is not None:
            write_private(options.tar_path, _tarball(device_id, files, now))
            bundle = None
        else:
            _write_bundle_dir(bundle_root, files)
            bundle = BundleLayout(bundle_root)
        write_public(record / "identity.pub", f"{identity.public_hex}\n".encode())
        write_public(record / "transport.pub", transport.recipient_file)
        write_public(record / "owner.pub", f"{owner}\n".encode())
        write_public(record / "mqtt.pem", mqtt.cert_pem)
    except BaseException:
        shutil.rmtree(record, ignore_errors=True)
        if created_out and options.out_dir is not None:
            shutil.rmtree(options.out_dir, ignore_errors=True)
        if options.tar_path is not None:
            with contextlib.suppress(OSError):
                options.tar_path.unlink()
        raise
    return Enrollment(device_id=device_id, record=record, bundle=bundle,
                      tar_path=options.tar_path)
