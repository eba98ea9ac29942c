"""`cloud-stub init DIR`: create a deployment directory (`protocol.bundle.DeploymentLayout`).

Everything is generated into a private temporary directory next to DIR and renamed into
place as the last step, so an interrupted or failed init leaves nothing behind and a
successful one is complete. DIR must not exist or must be an empty directory.

Written (modes in brackets; every private file is 0600 from creation):

- ``deployment.toml`` [0644]: cloud id, prefix, broker host/port, API URL
- ``ca/ca.pem`` [0644], ``ca/ca.key`` [0600]: the MQTT CA (ECDSA P-256)
- ``broker/``: ``broker.pem``, ``broker.key`` [0600], ``ca.pem``, rendered
  ``mosquitto.conf`` and ``acl`` (no owner users yet: `write_broker_acl` renders them
  from ``devices/`` at each enrolment and revocation), an empty ``crl.pem`` (signed
  again by every `devices revoke`), persistence ``data/`` [0700]
- ``cloud/mqtt.pem``, ``cloud/mqtt.key`` [0600]: the cloud's MQTT identity (CN ``cloud``)
- ``offline-root/{root-1,root-2}.key`` [0600] and ``.pub``: the root keys, to be moved
  offline (`serve` refuses to start while it can read them; ADR 0013)
- ``cloud/signers/{policy,review}.key`` [0600] and ``.pub`` (hex); ``review`` serves
  trust root v1 only
- ``test-reviewers/<name>/reviewer.key`` [0600] and ``.pub``: test reviewers' keys
- ``cloud/escrow.key`` [0600], ``cloud/escrow.pub``: the escrow age identity
- ``cloud/trust-root.json``: version 1, signed by root-1 and root-2
- ``cloud/courts.json`` and ``courts/demo-district-court.key`` [0600]: the test court
  (its key, like the test reviewers', must leave the host before `serve`)
- ``devices/``: empty, filled by `enroll`
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import pwd
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import tomli_w

from cloud_stub.config import DeploymentSettings
from cloud_stub.provision.broker_config import (
    BrokerFiles,
    check_config_value,
    render_acl,
    render_config,
)
from cloud_stub.provision.ca import CertificateAuthority
from cloud_stub.provision.errors import DeploymentError, InvalidName, WriteError
from cloud_stub.provision.keys import (
    PRIVATE_DIR_MODE,
    PUBLIC_MODE,
    check_empty_dir,
    make_dir,
    new_age_key,
    new_signer_key,
    write_atomic,
    write_private,
    write_public,
)
from cloud_stub.provision.names import (
    CLOUD_MQTT_USER,
    check_cloud_id,
    check_host,
    check_port,
    check_prefix,
    check_url,
    check_user_name,
    owner_mqtt_user,
)
from cloud_stub.provision.revocations import owner_in_service
from cloud_stub.provision.trust import (
    DEFAULT_ROOT_LIFETIME,
    ROOT_SIGNERS,
    SIGNERS,
    first_trust_root,
)
from protocol.bundle import DeploymentLayout
from protocol.keys import public_key_hex
from protocol.topics import DEFAULT_PREFIX

DEMO_COURT_ID = "demo-district-court"
DEMO_COURT_NAME = "Demo District Court (test only)"
# (name, organisation) of the reviewers `init` creates for trying things out
TEST_REVIEWERS = (("test-alice", "test-review-a"), ("test-carol", "test-review-b"))
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True, slots=True)
class BrokerPaths:
    """The broker's own files inside a deployment (not part of the shared layout)."""

    layout: DeploymentLayout

    @property
    def directory(self) -> Path:
        return self.layout.broker_cert.parent

    @property
    def config(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def acl(self) -> Path:
        return self.directory / "acl"

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def crl(self) -> Path:
        """The CA's certificate revocation list, rendered by `cloud_stub.provision.revoke`."""
        return self.directory / "crl.pem"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"


@dataclass(frozen=True, slots=True, kw_only=True)
class InitOptions:
    """What `cloud-stub init` asks for. Every field is validated by `init_deployment`."""

    cloud_id: str = "cloud-stub"
    prefix: str = DEFAULT_PREFIX
    broker_host: str = "localhost"
    broker_port: int = 8883
    api_url: str = "http://127.0.0.1:8080"
    broker_user: str = "mosquitto"
    broker_bind: str | None = None  # None: 127.0.0.1 for a loopback host, else all addresses
    root_lifetime: dt.timedelta = DEFAULT_ROOT_LIFETIME
    organization: str = "sealed-doorbell"


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind_address(options: InitOptions) -> str:
    if options.broker_bind is not None:
        return check_host(options.broker_bind)
    return "127.0.0.1" if _is_loopback(options.broker_host) else "0.0.0.0"  # noqa: S104


def _give_to_broker_user(paths: BrokerPaths, user: str) -> None:
    """As root, hand broker/ to the user mosquitto drops to, so it can read its key."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return  # mosquitto falls back to `nobody`; the operator installs broker/ by hand
    for path in (paths.directory, paths.data_dir, *paths.directory.iterdir()):
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def enrolled_device_ids(layout: DeploymentLayout) -> list[str]:
    """The devices enrolled in `layout`, sorted: each directory of ``devices/`` named by a
    device id (one `owner_mqtt_user` accepts) whose record holds the owner's certificate
    (the record's last file, so a half-written or a removed enrolment has no owner user).

    Raises DeploymentError when ``devices/`` cannot be listed.
    """
    try:
        names = sorted(entry.name for entry in os.scandir(layout.devices_dir)
                       if entry.is_dir(follow_symlinks=False))
    except OSError as exc:
        raise DeploymentError(
            f"{layout.devices_dir}: cannot list the device registry: {exc.strerror or exc}"
        ) from exc
    return [name for name in names
            if _can_own(name) and layout.owner_mqtt_cert(name).is_file()]


def owner_device_ids(layout: DeploymentLayout) -> list[str]:
    """The enrolled devices whose owner keeps an MQTT user: every `enrolled_device_ids`
    whose owner certificate in force no ``revoked.json`` revokes (`owner_in_service`: a
    device revocation revokes it, an owner-only one only the serials it lists). A record
    or certificate that cannot be read counts as revoked, so a damaged record never gives
    an owner access back."""
    return [name for name in enrolled_device_ids(layout) if owner_in_service(layout, name)]


def _can_own(name: str) -> bool:
    """True when `name` is a device id that an owner user can be named after."""
    try:
        owner_mqtt_user(name)
    except InvalidName:
        return False
    return True


def write_broker_acl(layout: DeploymentLayout, prefix: str) -> Path:
    """Render the broker's ACL from the device registry and replace ``broker/acl`` with it
    atomically; return its path. The broker applies it when it is reloaded (SIGHUP).

    An exclusive lock on ``devices/`` makes the listing and the write of two enrolments
    take turns, so the later one's ACL holds both devices. Raises InvalidName for an
    unsafe prefix, DeploymentError when ``devices/`` cannot be read, WriteError when the
    disk refuses.
    """
    with registry_lock(layout):
        return write_broker_acl_locked(layout, prefix)


def write_broker_acl_locked(layout: DeploymentLayout, prefix: str) -> Path:
    """`write_broker_acl` for a caller that holds `registry_lock` already. A revoked
    device's owner (`owner_device_ids`) gets no stanza."""
    acl = BrokerPaths(layout).acl
    text = render_acl(prefix, owner_device_ids(layout))
    write_atomic(acl, text.encode(), mode=PUBLIC_MODE, overwrite=True)
    return acl


@contextlib.contextmanager
def registry_lock(layout: DeploymentLayout) -> Iterator[None]:
    """Hold an exclusive flock on ``devices/``. Raises DeploymentError when it cannot.
    Not re-entrant: flock on a second descriptor of the same process would wait forever."""
    try:
        fd = os.open(layout.devices_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DeploymentError(
            f"{layout.devices_dir}: cannot open the device registry: {exc.strerror or exc}"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise DeploymentError(
                f"{layout.devices_dir}: cannot lock the device registry: {exc.strerror or exc}"
            ) from exc
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_tree(stage: DeploymentLayout, final: DeploymentLayout, options: InitOptions,
                now: dt.datetime) -> None:
    settings = DeploymentSettings.model_validate(
        {
            "cloud_id": options.cloud_id,
            "prefix": options.prefix,
            "broker": {"host": options.broker_host, "port": options.broker_port},
            "api": {"url": options.api_url},
        }
    )
    write_public(stage.settings, tomli_w.dumps(settings.model_dump(mode="json")).encode())

    # The MQTT CA and the broker's and cloud's TLS identities.
    make_dir(stage.ca_cert.parent)
    ca = CertificateAuthority.create(organization=options.organization, now=now)
    write_private(stage.ca_key, ca.key_pem)
    write_public(stage.ca_cert, ca.cert_pem)

    broker = BrokerPaths(stage)
    make_dir(broker.directory, mode=PRIVATE_DIR_MODE)
    make_dir(broker.data_dir, mode=PRIVATE_DIR_MODE)
    hosts = [options.broker_host, "localhost", "127.0.0.1"]
    server = ca.issue_server(hosts=hosts, now=now)
    write_private(stage.broker_key, server.key_pem)
    write_public(stage.broker_cert, server.cert_pem)
    write_public(broker.ca_cert, ca.cert_pem)
    final_broker = BrokerPaths(final)
    files = BrokerFiles(
        port=options.broker_port,
        bind_address=_bind_address(options),
        ca_file=final_broker.ca_cert,
        cert_file=final.broker_cert,
        key_file=final.broker_key,
        acl_file=final_broker.acl,
        persistence_dir=final_broker.data_dir,
        crl_file=final_broker.crl,
        user=options.broker_user,
    )
    # No certificate is revoked yet; the broker's `crlfile` needs the file to start.
    write_public(broker.crl, ca.issue_crl([], now=now, number=0))
    write_public(broker.config, render_config(files).encode())
    make_dir(stage.devices_dir)  # the registry, empty: filled by `enroll`
    write_broker_acl(stage, options.prefix)

    make_dir(stage.cloud_dir, mode=PRIVATE_DIR_MODE)
    cloud_mqtt = ca.issue_client(common_name=CLOUD_MQTT_USER, now=now)
    write_private(stage.cloud_mqtt_key, cloud_mqtt.key_pem)
    write_public(stage.cloud_mqtt_cert, cloud_mqtt.cert_pem)

    # Release signers and the trust root they define. The root keys go to a directory
    # of their own, to be moved offline: the service never needs them (ADR 0013).
    make_dir(stage.signer_key("policy").parent, mode=PRIVATE_DIR_MODE)
    make_dir(stage.offline_root_dir, mode=PRIVATE_DIR_MODE)
    signers = {name: new_signer_key() for name in SIGNERS}
    for name, signer in signers.items():
        path = stage.root_key(name) if name in ROOT_SIGNERS else stage.signer_key(name)
        write_private(path, signer.pem)
        write_public(path.with_suffix(".pub"), f"{signer.public_hex}\n".encode())
    trust_root = first_trust_root(
        {name: signer.private for name, signer in signers.items()},
        issuer=options.cloud_id,
        now=now,
        lifetime=options.root_lifetime,
    )
    write_public(stage.trust_root, trust_root)

    escrow = new_age_key()
    write_private(stage.escrow_identity, escrow.identity_file)
    write_public(stage.escrow_recipient, escrow.recipient_file)

    # The court registry with one test court whose key the testers hold.
    make_dir(stage.court_key(DEMO_COURT_ID).parent, mode=PRIVATE_DIR_MODE)
    court = new_signer_key()
    write_private(stage.court_key(DEMO_COURT_ID), court.pem)
    registry = {"courts": {DEMO_COURT_ID: {"name": DEMO_COURT_NAME,
                                           "public_key": public_key_hex(court.private)}}}
    write_public(stage.court_registry, (json.dumps(registry, indent=2) + "\n").encode())

    # Test reviewers, each with a key of their own, as on their own machines.
    make_dir(stage.test_reviewers_dir, mode=PRIVATE_DIR_MODE)
    for name, _org in TEST_REVIEWERS:
        reviewer = new_signer_key()
        make_dir(stage.test_reviewer_key(name).parent, mode=PRIVATE_DIR_MODE)
        write_private(stage.test_reviewer_key(name), reviewer.pem)
        write_public(stage.test_reviewer_key(name).with_suffix(".pub"),
                     f"{reviewer.public_hex}\n".encode())

    _give_to_broker_user(broker, options.broker_user)


def init_deployment(root: Path, options: InitOptions, *, now: dt.datetime) -> DeploymentLayout:
    """Create a complete deployment at `root` and return its layout.

    Raises InvalidName for a bad option, AlreadyExists when `root` is a file or a
    non-empty directory, WriteError when the disk refuses (nothing is left behind).
    """
    check_cloud_id(options.cloud_id)
    check_prefix(options.prefix)
    check_host(options.broker_host)
    check_port(options.broker_port)
    check_user_name(options.broker_user)
    options = replace(options, api_url=check_url(options.api_url))
    root = root.absolute()
    check_config_value("deployment directory", str(root))
    check_empty_dir(root, "a deployment")
    make_dir(root.parent)
    stage_root = root.parent / f".{root.name}.init-{secrets.token_hex(6)}"
    make_dir(stage_root, mode=0o755, exist_ok=False)
    try:
        _write_tree(DeploymentLayout(stage_root), DeploymentLayout(root), options, now)
        check_empty_dir(root, "a deployment")
        os.replace(stage_root, root)
    except OSError as exc:
        shutil.rmtree(stage_root, ignore_errors=True)
        raise WriteError(f"cannot create the deployment {root}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(stage_root, ignore_errors=True)
        raise
    return DeploymentLayout(root)
