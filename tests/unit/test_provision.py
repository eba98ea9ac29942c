"""Provisioning: what `cloud-stub init` and `devices enroll` write, and what they refuse.

The bundle is what leaves the operator's hands for a Pi that may be stolen: the checks
here compare key material, not file names, so a cloud key renamed or re-encoded inside
a bundle would still be caught.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from cloud_stub.cli import main as cloud_stub_main
from cloud_stub.config import load_deployment
from cloud_stub.provision.ca import CertificateAuthority
from cloud_stub.provision.deployment import (
    TEST_REVIEWERS,
    BrokerPaths,
    InitOptions,
    init_deployment,
)
from cloud_stub.provision.enroll import EnrollOptions, enroll_device
from cloud_stub.provision.errors import AlreadyExists, InvalidName, WriteError
from cloud_stub.provision.keys import new_age_key, write_private, write_public
from cloud_stub.provision.trust import RELEASE_SIGNERS, ROOT_SIGNERS
from device.config import load_config
from protocol.bundle import BundleLayout, DeploymentLayout, OwnerBundleLayout
from protocol.keys import key_id, private_key_from_pem
from protocol.topics import DeviceTopics
from protocol.trust_root import load_trust_root
from tests.fixtures.deployment import TestDeployment

NOW = dt.datetime.now(dt.UTC)
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n(.*?)-----END \1-----", re.S)


# --- helpers ---------------------------------------------------------------------------


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _store(layout: DeploymentLayout) -> Store:
    return Store([_cert(layout.ca_cert)])


def _policy(layout: DeploymentLayout) -> PolicyBuilder:
    """Verification against the deployment's CA at the current time (the suite may run
    longer than the certificates' 5-minute backdating)."""
    return PolicyBuilder().store(_store(layout)).time(dt.datetime.now(dt.UTC))


def _verify_client(layout: DeploymentLayout, cert_path: Path, key_path: Path) -> str:
    """Chain, validity and client key usage against the CA; the key matches; return CN."""
    cert = _cert(cert_path)
    verified = _policy(layout).build_client_verifier().verify(cert, [])
    assert verified.chain[-1] == _cert(layout.ca_cert)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _private_files(root: Path) -> Iterator[Path]:
    """Every file under `root` whose content is a private key or an age identity."""
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if b"PRIVATE KEY-----" in data or b"AGE-SECRET-KEY-1" in data:
                yield path


def _needles(key_file: Path) -> set[bytes]:
    """Byte strings that would betray the secret in `key_file`, in any usual encoding."""
    data = key_file.read_bytes()
    needles: set[bytes] = set()
    if data.startswith(b"AGE-SECRET-KEY-1"):
        identity = data.strip()
        needles |= {identity, identity.lower(), identity[16:], identity[16:].lower()}
        return needles
    key = serialization.load_pem_private_key(data, password=None)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if isinstance(key, Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        raw = key.private_numbers().private_value.to_bytes(32, "big")
    needles |= {data.strip(), der, raw, raw.hex().encode(), base64.b64encode(raw)}
    needles.add(base64.b64encode(der))  # not a prefix: every P-256 PKCS#8 starts alike
    return needles


def _decoded_views(data: bytes) -> list[bytes]:
    """The bytes themselves plus the DER inside each PEM block (so raw scalars show)."""
    views = [data]
    for match in PEM_BLOCK.finditer(data):
        body = b"".join(match.group(2).split())
        views.append(base64.b64decode(body))
    return views


def _bundle_contents(bundle: Path) -> dict[str, bytes]:
    if bundle.is_dir():
        return {
            str(p.relative_to(bundle)): p.read_bytes() for p in bundle.rglob("*") if p.is_file()
        }
    with tarfile.open(bundle) as tar:
        out = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            if extracted is not None:
                out[member.name] = extracted.read()
        return out


def _cloud_private_keys(layout: DeploymentLayout) -> list[Path]:
    keys = [
        p for p in _private_files(layout.root) if "devices" not in p.relative_to(layout.root).parts
    ]
    expected = {
        layout.ca_key,
        layout.broker_key,
        layout.cloud_mqtt_key,
        layout.escrow_identity,
        layout.court_key("demo-district-court"),
        *(layout.root_key(n) for n in ROOT_SIGNERS),
        *(layout.signer_key(n) for n in RELEASE_SIGNERS),
        *(layout.test_reviewer_key(n) for n, _ in TEST_REVIEWERS),
    }
    assert set(keys) == expected  # nothing secret was written that this list does not know
    return keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- certificates and the trust root ------------------------------------------------


def test_certificates_verify_against_the_ca(deployment: TestDeployment) -> None:
    layout = deployment.layout
    device_id = deployment.new_device_id("certs")
    bundle = deployment.enroll_device(device_id)

    assert _verify_client(layout, layout.cloud_mqtt_cert, layout.cloud_mqtt_key) == "cloud"
    assert _verify_client(layout, bundle.mqtt_cert, bundle.mqtt_key) == device_id
    assert (layout.device_record(device_id) / "mqtt.pem").read_bytes() == (
        bundle.mqtt_cert.read_bytes()
    )

    broker = _cert(layout.broker_cert)
    builder = _policy(layout)
    for name in (DNSName("localhost"), IPAddress(ipaddress.ip_address("127.0.0.1"))):
        builder.build_server_verifier(name).verify(broker, [])
    broker_key = serialization.load_pem_private_key(layout.broker_key.read_bytes(), None)
    assert broker_key.public_key() == broker.public_key()

    ca = _cert(layout.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    assert BrokerPaths(layout).ca_cert.read_bytes() == layout.ca_cert.read_bytes()

    # Negative controls: a client certificate is no server certificate, and a certificate
    # from another CA does not chain.
    with pytest.raises(x509.verification.VerificationError):
        builder.build_server_verifier(DNSName("localhost")).verify(_cert(bundle.mqtt_cert), [])
    rogue = CertificateAuthority.create(organization="sealed-doorbell", now=NOW)
    forged = rogue.issue_client(common_name=device_id, now=NOW).cert
    with pytest.raises(x509.verification.VerificationError):
        _policy(layout).build_client_verifier().verify(forged, [])


def test_trust_root_loads_and_holds_the_keys_on_disk(deployment: TestDeployment) -> None:
    layout = deployment.layout
    root = load_trust_root(layout.trust_root.read_bytes(), now=NOW)

    def kid(name: str) -> str:
        path = layout.root_key(name) if name in ROOT_SIGNERS else layout.signer_key(name)
        return key_id(private_key_from_pem(path.read_bytes()).public_key())

    assert root.version == 1
    assert root.issuer == load_deployment(layout).cloud_id
    assert root.roles["root"].keyids == {kid(n) for n in ROOT_SIGNERS}
    assert root.roles["release"].keyids == {kid(n) for n in RELEASE_SIGNERS}
    assert root.roles["root"].threshold == 2
    assert root.roles["release"].threshold == 2
    assert set(root.keys) == {kid(n) for n in ROOT_SIGNERS + RELEASE_SIGNERS}
    assert root.expires > NOW + dt.timedelta(days=300)
    bundle = deployment.enroll_device()
    assert bundle.trust_root.read_bytes() == layout.trust_root.read_bytes()


def test_deployment_settings_follow_the_contract(tmp_path: Path) -> None:
    layout = init_deployment(
        tmp_path / "d",
        InitOptions(
            prefix="acme/doorbell/v1",
            broker_host="mqtt.example.org",
            broker_port=9883,
            api_url="https://cloud.example.org/",
            cloud_id="acme",
        ),
        now=NOW,
    )
    settings = load_deployment(layout)
    assert (settings.cloud_id, settings.prefix) == ("acme", "acme/doorbell/v1")
    assert (settings.broker.host, settings.broker.port) == ("mqtt.example.org", 9883)
    assert settings.api.url == "https://cloud.example.org"
    broker = _cert(layout.broker_cert)
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mqtt.example.org" in sans.get_values_for_type(x509.DNSName)
    conf = BrokerPaths(layout).config.read_text()
    assert "listener 9883 0.0.0.0\n" in conf  # a public broker name listens everywhere
    assert "require_certificate true\n" in conf
    assert "allow_anonymous false\n" in conf
    assert "use_identity_as_username true\n" in conf
    assert "tls_version tlsv1.2\n" in conf
    courts = (layout.court_registry).read_text()
    assert "demo-district-court" in courts


def _acl_rules(layout: DeploymentLayout) -> list[str]:
    return [
        line
        for line in BrokerPaths(layout).acl.read_text().splitlines()
        if line and not line.startswith("#")
    ]


def test_acl_is_exactly_the_wire_contract(fresh_deployment: TestDeployment) -> None:
    """A new deployment's ACL: the devices' patterns and the cloud, and no owner at all
    (the single `user owner` that read every household's notices is gone)."""
    rules = _acl_rules(fresh_deployment.layout)
    p = fresh_deployment.prefix
    assert rules == [
        f"pattern read {p}/%u/release",
        f"pattern read {p}/%u/escrow-ack",
        f"pattern read {p}/%u/trust-root",
        f"pattern write {p}/%u/result",
        f"pattern write {p}/%u/escrow",
        f"pattern write {p}/%u/status",
        f"pattern write {p}/%u/notice",
        "user cloud",
        f"topic write {p}/+/release",
        f"topic write {p}/+/escrow-ack",
        f"topic write {p}/+/trust-root",
        f"topic read {p}/+/result",
        f"topic read {p}/+/escrow",
        f"topic read {p}/+/status",
        f"topic read {p}/+/notice",
    ]


def _owner_stanza(prefix: str, device_id: str) -> list[str]:
    return [
        f"user owner.{device_id}",
        f"topic deny {prefix}/owner.{device_id}/#",
        f"topic read {prefix}/{device_id}/notice",
        f"topic read {prefix}/{device_id}/status",
    ]


def test_each_enrolment_adds_its_owner_to_the_acl(fresh_deployment: TestDeployment) -> None:
    """The ACL is rendered from the device registry: one owner per enrolled device,
    reading that device's notice and status only, and none before enrolment."""
    layout, p = fresh_deployment.layout, fresh_deployment.prefix
    base = _acl_rules(layout)
    assert not [rule for rule in base if "owner" in rule]

    fresh_deployment.enroll_device("porch")
    assert _acl_rules(layout) == base + _owner_stanza(p, "porch")
    fresh_deployment.enroll_device("garage")  # sorted by id, the earlier owner kept
    assert _acl_rules(layout) == base + _owner_stanza(p, "garage") + _owner_stanza(p, "porch")
    assert _mode(BrokerPaths(layout).acl) == 0o644
    assert not list(BrokerPaths(layout).directory.glob(".*"))  # no temporary file left


def test_acl_names_only_complete_records(fresh_deployment: TestDeployment) -> None:
    """A directory in devices/ is no enrolment: without the owner certificate (the
    record's last file), or with a name that is no device id (nor one short enough for
    an owner's CN), it gets no owner user, and its name never reaches the ACL."""
    layout, p = fresh_deployment.layout, fresh_deployment.prefix
    (layout.devices_dir / "half-written").mkdir()
    for hostile in ("Bad Name", "x\ntopic readwrite #", "owner", "a" * 59):
        (layout.devices_dir / hostile).mkdir()
        (layout.devices_dir / hostile / "owner-mqtt.pem").write_text("x")
    (layout.devices_dir / "stray-file").write_text("x")
    fresh_deployment.enroll_device("porch")
    rules = _acl_rules(layout)
    assert [rule for rule in rules if rule.startswith("user ")] == ["user cloud",
                                                                    "user owner.porch"]
    assert "topic readwrite #" not in rules
    assert f"topic read {p}/porch/notice" in rules  # the control


# --- secrets stay where they belong ----------------------------------------------------


def test_no_bundle_holds_a_cloud_private_key(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """Attack: a stolen Pi's bundle yields a cloud key (signer, escrow, CA, broker)."""
    layout = fresh_deployment.layout
    dir_bundle = fresh_deployment.enroll_device()
    out_id = fresh_deployment.new_device_id("out")
    enroll_device(
        layout,
        out_id,
        EnrollOptions(owner_recipient=fresh_deployment.owner.recipient, out_dir=tmp_path / "out"),
        now=NOW,
    )
    tar_id = fresh_deployment.new_device_id("tar")
    enroll_device(
        layout,
        tar_id,
        EnrollOptions(
            owner_recipient=fresh_deployment.owner.recipient, tar_path=tmp_path / "b.tar"
        ),
        now=NOW,
    )
    bundles = [dir_bundle.root, tmp_path / "out", tmp_path / "b.tar"]

    needles = {path: _needles(path) for path in _cloud_private_keys(layout)}
    for bundle in bundles:
        contents = _bundle_contents(bundle)
        assert len(contents) == 12
        views = [v for data in contents.values() for v in _decoded_views(data)]
        for key_path, patterns in needles.items():
            for needle in patterns:
                assert not any(needle in v for v in views), f"{key_path} leaked into {bundle}"
        # Positive control: the same scan finds the device's own keys in its bundle.
        own = [
            n
            for name, data in contents.items()
            if name.endswith("identity.key")
            for n in _needles_from_bytes(data)
        ]
        assert own
        assert any(n in v for n in own for v in views)


def _needles_from_bytes(data: bytes) -> set[bytes]:
    key = private_key_from_pem(data)
    return {
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    }


def test_private_files_are_0600_and_private_dirs_0700(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    layout = fresh_deployment.layout
    bundle = fresh_deployment.enroll_device()
    tar_path = tmp_path / "bundle.tar"
    enroll_device(
        layout,
        fresh_deployment.new_device_id("t"),
        EnrollOptions(owner_recipient=fresh_deployment.owner.recipient, tar_path=tar_path),
        now=NOW,
    )

    private = list(_private_files(layout.root))
    # The directory bundle's identity, transport and mqtt keys; each enrolment's owner key.
    assert len(private) == len(_cloud_private_keys(layout)) + 3 + 2
    for path in private:
        assert _mode(path) == 0o600, path
    owner = layout.owner_bundle(bundle.root.parent.name)
    for directory in (
        layout.cloud_dir,
        layout.signer_key("policy").parent,
        bundle.root,
        owner.root,
        layout.test_courts_dir,
        layout.offline_root_dir,
        layout.test_reviewers_dir,
        BrokerPaths(layout).data_dir,
    ):
        assert _mode(directory) == 0o700, directory
    for public in (layout.ca_cert, layout.trust_root, bundle.config, bundle.mqtt_cert,
                   owner.mqtt_cert, owner.config):
        assert _mode(public) == 0o644, public
    assert _mode(tar_path) == 0o600
    with tarfile.open(tar_path) as tar:
        modes = {Path(m.name).name: m.mode for m in tar.getmembers()}
    assert modes["identity.key"] == modes["transport.key"] == modes["mqtt.key"] == 0o600
    assert modes["agent.toml"] == 0o644
    assert not list(layout.root.rglob("*.tmp"))
    assert not list(layout.root.rglob(".*"))


def test_private_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "k", b"secret")
        write_public(tmp_path / "p", b"public")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600
    assert _mode(tmp_path / "p") == 0o644
    with pytest.raises(AlreadyExists):
        write_private(tmp_path / "k", b"other")
    assert (tmp_path / "k").read_bytes() == b"secret"
    with pytest.raises(WriteError, match="missing"):
        write_private(tmp_path / "missing" / "k", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "p"]


# --- the bundle works on the device ------------------------------------------------------


def test_bundle_agent_config_loads(deployment: TestDeployment) -> None:
    device_id = deployment.new_device_id("cfg")
    bundle = deployment.enroll_device(device_id)
    config = load_config(bundle.config)
    assert config.agent.device_id == device_id
    assert bundle.device_id_file.read_text().strip() == device_id
    assert config.mqtt.enabled
    assert config.mqtt.prefix == deployment.prefix
    assert config.keys.owner_recipient == deployment.owner.recipient
    assert config.keys.escrow_recipient == deployment.layout.escrow_recipient.read_text().strip()
    for path in (
        config.keys.identity_key,
        config.keys.transport_identity,
        config.mqtt.ca_cert,
        config.mqtt.client_cert,
        config.mqtt.client_key,
        config.release.trust_root,
    ):
        assert path is not None
        assert path.is_file()
        assert path.parent == bundle.root
    # Uploads go to the URL each token names: the agent has no cloud URL of its own.
    assert config.release.cloud_url is None
    record = deployment.layout.device_record(device_id)
    assert (record / "identity.pub").read_text() == bundle.identity_pub.read_text()
    assert (record / "transport.pub").read_text() == bundle.transport_recipient.read_text()
    assert (record / "owner.pub").read_text().strip() == deployment.owner.recipient
    identity = private_key_from_pem(bundle.identity_key.read_bytes())
    assert identity.public_key().public_bytes_raw().hex() == bundle.identity_pub.read_text().strip()


def test_default_bundle_config_points_at_the_install_dir(fresh_deployment: TestDeployment) -> None:
    layout = fresh_deployment.layout
    enroll_device(
        layout, "porch", EnrollOptions(owner_recipient=fresh_deployment.owner.recipient), now=NOW
    )
    text = layout.device_bundle("porch").config.read_text()
    assert 'identity_key = "/etc/doorbell/identity.key"' in text
    assert "state_dir" not in text


# --- the owner's credential ------------------------------------------------------------

OWNER_FILES = {"device-id", "mqtt.pem", "mqtt.key", "ca.pem", "owner.toml"}


def _check_owner_bundle(layout: DeploymentLayout, device_id: str, owner: OwnerBundleLayout,
                        prefix: str) -> None:
    assert {p.name for p in owner.root.iterdir()} == OWNER_FILES
    assert _mode(owner.root) == 0o700
    assert _mode(owner.mqtt_key) == 0o600
    for public in OWNER_FILES - {"mqtt.key"}:
        assert _mode(owner.root / public) == 0o644, public
    assert owner.device_id_file.read_text() == f"{device_id}\n"
    assert owner.ca_cert.read_bytes() == layout.ca_cert.read_bytes()
    assert layout.owner_mqtt_cert(device_id).read_bytes() == owner.mqtt_cert.read_bytes()
    settings = load_deployment(layout)
    config = tomllib.loads(owner.config.read_text())
    topics = DeviceTopics(device_id, prefix)
    assert config == {
        "prefix": prefix,
        "broker": {"host": settings.broker.host, "port": settings.broker.port},
        "topics": {"notice": topics.notice, "status": topics.status},
    }


def test_owner_bundle_holds_the_owners_credential(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """The owner bundle, at its default place and under --owner-out: its five files, their
    modes, and an owner.toml naming the broker and the device's two topics."""
    layout, prefix = fresh_deployment.layout, fresh_deployment.prefix
    fresh_deployment.enroll_device("porch")
    _check_owner_bundle(layout, "porch", layout.owner_bundle("porch"), prefix)

    result = enroll_device(
        layout, "yard",
        EnrollOptions(owner_recipient=fresh_deployment.owner.recipient,
                      owner_out=tmp_path / "for-owner"),
        now=NOW,
    )
    assert result.owner_bundle.root == tmp_path / "for-owner"
    _check_owner_bundle(layout, "yard", result.owner_bundle, prefix)
    assert not layout.owner_bundle("yard").root.exists()
    assert (layout.device_record("porch") / "owner-mqtt.pem").is_file()  # the public record


def test_owner_certificate_is_a_client_certificate_of_the_ca(
    deployment: TestDeployment,
) -> None:
    """The owner's certificate chains to the deployment's CA, is for clientAuth only, its
    key matches, and its CN (the broker's username for it) is owner.<id>."""
    layout = deployment.layout
    device_id = deployment.new_device_id("own")
    deployment.enroll_device(device_id)
    owner = layout.owner_bundle(device_id)
    assert _verify_client(layout, owner.mqtt_cert, owner.mqtt_key) == f"owner.{device_id}"
    sans = _cert(owner.mqtt_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:sealed-doorbell:mqtt-client:owner.{device_id}"
    ]
    assert sans.get_values_for_type(x509.DNSName) == []  # it names no host
    # Negative control: the device's certificate is no owner's (another CN, same CA).
    bundle = layout.device_bundle(device_id)
    assert _verify_client(layout, bundle.mqtt_cert, bundle.mqtt_key) == device_id


def test_owner_bundle_holds_no_cloud_or_device_key(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """Attack: a stolen phone's owner bundle yields a cloud key or the doorbell's keys;
    a stolen doorbell's bundle yields the owner's MQTT key."""
    layout = fresh_deployment.layout
    device = fresh_deployment.enroll_device("porch")
    owner = layout.owner_bundle("porch")
    enroll_device(
        layout, "yard",
        EnrollOptions(owner_recipient=fresh_deployment.owner.recipient,
                      tar_path=tmp_path / "yard.tar"),
        now=NOW,
    )
    cloud_keys = {path: _needles(path) for path in _cloud_private_keys(layout)}
    device_keys = {path: _needles(path) for path in _private_files(device.root)}
    assert len(device_keys) == 3  # identity, transport, mqtt
    owner_views = [v for data in _bundle_contents(owner.root).values()
                   for v in _decoded_views(data)]
    for key_path, patterns in {**cloud_keys, **device_keys}.items():
        for needle in patterns:
            assert not any(needle in v for v in owner_views), f"{key_path} leaked"
    # Positive control: the same scan finds the owner's own key in the owner bundle...
    owner_needles = _needles(owner.mqtt_key)
    assert any(n in v for n in owner_needles for v in owner_views)
    # ... and does not find it in the device's bundle, as a directory or as a tarball.
    for bundle, key in ((device.root, owner.mqtt_key),
                        (tmp_path / "yard.tar", layout.owner_bundle("yard").mqtt_key)):
        views = [v for data in _bundle_contents(bundle).values() for v in _decoded_views(data)]
        assert not any(n in v for n in _needles(key) for v in views), bundle


def test_a_failed_enrolment_leaves_no_owner_bundle(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """The last step, the ACL, fails after both bundles and the record were written:
    everything this enrolment wrote is removed and the ACL does not name its owner."""
    layout = fresh_deployment.layout
    owner_recipient = fresh_deployment.owner.recipient
    fresh_deployment.enroll_device("porch")
    acl = BrokerPaths(layout).acl
    good_acl = acl.read_bytes()
    acl.unlink()
    acl.mkdir()  # os.replace cannot put the new ACL over a directory
    (acl / "keep").write_text("x")
    (tmp_path / "empty-owner").mkdir()
    try:
        for owner_out in (None, tmp_path / "new-owner", tmp_path / "empty-owner"):
            with pytest.raises(WriteError, match="acl"):
                enroll_device(layout, "yard",
                              EnrollOptions(owner_recipient=owner_recipient, owner_out=owner_out),
                              now=NOW)
            assert not layout.device_record("yard").exists()  # record, bundle, owner dir
            assert not (tmp_path / "new-owner").exists()
            assert list((tmp_path / "empty-owner").iterdir()) == []  # emptied, kept
    finally:
        shutil.rmtree(acl)
        acl.write_bytes(good_acl)
    # Positive control: with the ACL writable again the same enrolment succeeds.
    fresh_deployment.enroll_device("yard")
    assert layout.owner_bundle("yard").mqtt_key.is_file()
    assert "user owner.yard" in _acl_rules(layout)


def test_owner_bundle_may_not_share_the_device_bundles_directory(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """The device must never receive the owner's key: an owner bundle inside, around or
    in the device bundle's directory is refused before anything is written."""
    layout = fresh_deployment.layout
    owner_recipient = fresh_deployment.owner.recipient
    for out, owner_out in ((tmp_path / "b", tmp_path / "b"),
                           (tmp_path / "b", tmp_path / "b" / "owner"),
                           (tmp_path / "b" / "dev", tmp_path / "b"),
                           (None, layout.device_bundle("porch").root / "owner")):
        with pytest.raises(InvalidName, match="separate directories"):
            enroll_device(layout, "porch",
                          EnrollOptions(owner_recipient=owner_recipient, out_dir=out,
                                        owner_out=owner_out),
                          now=NOW)
        assert not layout.device_record("porch").exists()
        assert not (tmp_path / "b").exists()
    # Control: siblings are fine.
    enroll_device(layout, "porch",
                  EnrollOptions(owner_recipient=owner_recipient, out_dir=tmp_path / "b" / "dev",
                                owner_out=tmp_path / "b" / "owner"),
                  now=NOW)
    assert (tmp_path / "b" / "owner" / "mqtt.key").is_file()


# --- refusals ------------------------------------------------------------------------------

BAD_IDS = [
    "",
    "A",
    "-lead",
    "a/b",
    "a+b",
    "a#",
    "a b",
    "a_b",
    "a.b",
    "é",
    "a\n",
    "x" * 64,
    "cloud",
    "owner",
    "%u",
    "+",
    "#",
]


@pytest.mark.parametrize("device_id", BAD_IDS)
def test_bad_device_ids_are_refused(fresh_deployment: TestDeployment, device_id: str) -> None:
    layout = fresh_deployment.layout
    before = sorted(layout.devices_dir.iterdir())
    with pytest.raises(InvalidName):
        enroll_device(
            layout,
            device_id,
            EnrollOptions(owner_recipient=fresh_deployment.owner.recipient),
            now=NOW,
        )
    assert sorted(layout.devices_dir.iterdir()) == before


def test_the_longest_id_leaves_room_for_the_owners_certificate_name(
    fresh_deployment: TestDeployment,
) -> None:
    """X.509 caps a CN at 64 characters: `owner.` + 58 fits, + 59 cannot be issued, so
    such an id is refused before anything is written."""
    layout = fresh_deployment.layout
    longest = "a" + "0" * 57
    fresh_deployment.enroll_device(longest)
    owner = layout.owner_bundle(longest)
    assert _verify_client(layout, owner.mqtt_cert, owner.mqtt_key) == f"owner.{longest}"
    before = sorted(layout.devices_dir.iterdir())
    with pytest.raises(InvalidName, match="at most 58"):
        fresh_deployment.enroll_device("a" + "0" * 58)
    assert sorted(layout.devices_dir.iterdir()) == before


def test_bad_owner_recipient_is_refused(fresh_deployment: TestDeployment) -> None:
    layout = fresh_deployment.layout
    for recipient in ("", "age1notarecipient", "AGE-SECRET-KEY-1" + "Q" * 58, "ssh-ed25519 AAAA"):
        with pytest.raises(InvalidName, match="owner recipient"):
            enroll_device(layout, "dev", EnrollOptions(owner_recipient=recipient), now=NOW)
    assert not layout.device_record("dev").exists()


def test_enrolling_twice_is_refused_and_changes_nothing(
    fresh_deployment: TestDeployment,
) -> None:
    bundle = fresh_deployment.enroll_device("door")
    before = {p: p.read_bytes() for p in bundle.root.parent.rglob("*") if p.is_file()}
    with pytest.raises(AlreadyExists, match="enrolled already"):
        fresh_deployment.enroll_device("door")
    assert {p: p.read_bytes() for p in bundle.root.parent.rglob("*") if p.is_file()} == before


def test_existing_outputs_are_refused(fresh_deployment: TestDeployment, tmp_path: Path) -> None:
    layout = fresh_deployment.layout
    owner = fresh_deployment.owner.recipient
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_bytes(b"mine")
    (tmp_path / "b.tar").write_bytes(b"mine")
    with pytest.raises(AlreadyExists):
        enroll_device(
            layout, "d1", EnrollOptions(owner_recipient=owner, out_dir=tmp_path / "full"), now=NOW
        )
    with pytest.raises(AlreadyExists):
        enroll_device(
            layout, "d1", EnrollOptions(owner_recipient=owner, tar_path=tmp_path / "b.tar"), now=NOW
        )
    with pytest.raises(InvalidName, match="not both"):
        enroll_device(
            layout,
            "d1",
            EnrollOptions(
                owner_recipient=owner, out_dir=tmp_path / "o", tar_path=tmp_path / "o.tar"
            ),
            now=NOW,
        )
    assert (tmp_path / "full" / "keep").read_bytes() == b"mine"
    assert (tmp_path / "b.tar").read_bytes() == b"mine"
    assert not layout.device_record("d1").exists()  # a refused enrolment registers nothing


def test_init_refuses_a_path_mosquitto_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidName, match="without spaces"):
        init_deployment(tmp_path / "my deployment", InitOptions(), now=NOW)
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    layout = init_deployment(tmp_path / "d", InitOptions(), now=NOW)
    ca = layout.ca_cert.read_bytes()
    with pytest.raises(AlreadyExists, match="not empty"):
        init_deployment(tmp_path / "d", InitOptions(), now=NOW)
    assert layout.ca_cert.read_bytes() == ca
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(AlreadyExists):
        init_deployment(tmp_path / "file", InitOptions(), now=NOW)
    (tmp_path / "empty").mkdir()
    init_deployment(tmp_path / "empty", InitOptions(), now=NOW)  # an empty directory is fine
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "options",
    [
        InitOptions(prefix="a/+/b"),
        InitOptions(prefix="a//b"),
        InitOptions(prefix="/a"),
        InitOptions(prefix="a/%u"),
        InitOptions(prefix="a b"),
        InitOptions(prefix="a/#"),
        InitOptions(broker_host="bad host"),
        InitOptions(broker_port=0),
        InitOptions(api_url="ftp://x"),
        InitOptions(api_url="http://user:pw@x"),
        InitOptions(cloud_id="bad id"),
        InitOptions(broker_user="root\nuser evil"),
    ],
)
def test_init_refuses_bad_options(tmp_path: Path, options: InitOptions) -> None:
    with pytest.raises(InvalidName):
        init_deployment(tmp_path / "d", options, now=NOW)
    assert not (tmp_path / "d").exists()
    assert list(tmp_path.iterdir()) == []


# --- the command line --------------------------------------------------------------------


def test_cli_init_and_enroll_to_a_tarball(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment_dir = tmp_path / "dep"
    assert cloud_stub_main(["init", str(deployment_dir), "--prefix", "home/v1"]) == 0
    owner = new_age_key().recipient
    tar_path = tmp_path / "porch.tar"
    assert (
        cloud_stub_main(
            [
                "devices",
                "enroll",
                "porch",
                "--owner-recipient",
                owner,
                "--deployment",
                str(deployment_dir),
                "--tar",
                str(tar_path),
            ]
        )
        == 0
    )
    with tarfile.open(tar_path) as tar:
        names = sorted(tar.getnames())
        agent = tar.extractfile("porch/agent.toml")
        assert agent is not None
        text = agent.read().decode()
    assert names[0] == "porch"
    assert "porch/identity.key" in names
    assert 'prefix = "home/v1"' in text
    assert not DeploymentLayout(deployment_dir).device_bundle("porch").root.exists()

    assert (
        cloud_stub_main(
            [
                "devices",
                "enroll",
                "porch",
                "--owner-recipient",
                owner,
                "--deployment",
                str(deployment_dir),
            ]
        )
        == 1
    )
    assert "enrolled already" in capsys.readouterr().err
    assert (
        cloud_stub_main(
            [
                "devices",
                "enroll",
                "Porch/1",
                "--owner-recipient",
                owner,
                "--deployment",
                str(deployment_dir),
            ]
        )
        == 1
    )
    assert "device id 'Porch/1' is not allowed" in capsys.readouterr().err


def test_cli_enroll_writes_the_owner_bundle_and_asks_for_a_broker_reload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment_dir = tmp_path / "dep"
    assert cloud_stub_main(["init", str(deployment_dir), "--prefix", "home/v1"]) == 0
    capsys.readouterr()
    owner = new_age_key().recipient
    owner_dir = tmp_path / "owner-porch"
    enroll = ["devices", "enroll", "--owner-recipient", owner, "--deployment", str(deployment_dir)]
    assert cloud_stub_main([*enroll, "porch", "--owner-out", str(owner_dir)]) == 0
    out = capsys.readouterr().out
    assert f"owner bundle (holds the owner's MQTT key) at {owner_dir}" in out
    assert "owner.porch" in out
    assert "systemctl reload mosquitto" in out
    assert "kill -HUP" in out
    assert {p.name for p in owner_dir.iterdir()} == OWNER_FILES
    layout = DeploymentLayout(deployment_dir)
    assert not layout.owner_bundle("porch").root.exists()
    assert "user owner.porch" in _acl_rules(layout)

    # Refused: the owner's key inside the device's bundle.
    bundle_dir = tmp_path / "yard-bundle"
    argv = [*enroll, "yard", "--out", str(bundle_dir), "--owner-out", str(bundle_dir / "o")]
    assert cloud_stub_main(argv) == 1
    assert "separate directories" in capsys.readouterr().err
    assert not bundle_dir.exists()
    assert not layout.device_record("yard").exists()


def test_enroll_in_a_missing_deployment_is_refused(tmp_path: Path) -> None:
    owner = new_age_key().recipient
    assert (
        cloud_stub_main(
            [
                "devices",
                "enroll",
                "porch",
                "--owner-recipient",
                owner,
                "--deployment",
                str(tmp_path / "nowhere"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "nowhere").exists()


def test_tarball_extracts_to_a_working_bundle(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    tar_path = tmp_path / "x.tar"
    enroll_device(
        fresh_deployment.layout,
        "yard",
        EnrollOptions(
            owner_recipient=fresh_deployment.owner.recipient,
            tar_path=tar_path,
            install_dir=tmp_path / "etc" / "yard",
        ),
        now=NOW,
    )
    # Unpacked as deploy/raspberry-pi/install.sh unpacks it on the Pi (GNU tar, ownership
    # not taken from the archive). Not tarfile's extractall(filter="data"): that argument
    # arrived in Python 3.11.4, and Debian 12's python3 is 3.11.2.
    etc = tmp_path / "etc"
    etc.mkdir()
    tar = ["tar", "--extract", "--file", str(tar_path), "--directory", str(etc), "--no-same-owner"]
    subprocess.run(tar, check=True, capture_output=True, timeout=60)
    config = load_config(BundleLayout(tmp_path / "etc" / "yard").config)
    assert config.keys.identity_key is not None
    assert config.keys.identity_key.is_file()
    assert _mode(tmp_path / "etc" / "yard" / "identity.key") == 0o600
