"""File names of a deployment directory and of a device bundle.

`cloud-stub init DIR` writes a deployment directory; `cloud-stub devices enroll`
writes a device bundle and an owner bundle inside it. The agent reads the device bundle,
the owner's application the owner bundle. Every side imports these names from here so
that they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DeploymentLayout:
    """A deployment directory, owned by the operator of the cloud stub."""

    root: Path

    @property
    def settings(self) -> Path:  # deployment.toml: cloud id, broker host/port, prefix, URLs
        return self.root / "deployment.toml"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def broker_cert(self) -> Path:
        return self.root / "broker" / "broker.pem"

    @property
    def broker_key(self) -> Path:
        return self.root / "broker" / "broker.key"

    @property
    def cloud_dir(self) -> Path:
        return self.root / "cloud"

    @property
    def cloud_mqtt_cert(self) -> Path:
        return self.cloud_dir / "mqtt.pem"

    @property
    def cloud_mqtt_key(self) -> Path:
        return self.cloud_dir / "mqtt.key"

    def signer_key(self, name: str) -> Path:
        """Ed25519 private key (PKCS#8 PEM) of a service signer: policy (and v1's review)."""
        return self.cloud_dir / "signers" / f"{name}.key"

    @property
    def offline_root_dir(self) -> Path:
        """The root keys, written here by `init` to be moved offline (ADR 0013)."""
        return self.root / "offline-root"

    def root_key(self, name: str) -> Path:  # root-1, root-2
        return self.offline_root_dir / f"{name}.key"

    @property
    def test_reviewers_dir(self) -> Path:
        """Keys of the test reviewers `init` creates, each in a directory of its own."""
        return self.root / "test-reviewers"

    def test_reviewer_key(self, name: str) -> Path:
        return self.test_reviewers_dir / name / "reviewer.key"

    @property
    def trust_root_draft(self) -> Path:
        """The next trust root's ``signed`` part, before `cloud-stub root sign`."""
        return self.cloud_dir / "trust-root.draft.json"

    @property
    def trust_root_chain_dir(self) -> Path:
        """Every root after the first, ``<version>.json``: published to devices."""
        return self.cloud_dir / "trust-roots"

    @property
    def escrow_identity(self) -> Path:  # age identity, AGE-SECRET-KEY-...
        return self.cloud_dir / "escrow.key"

    @property
    def escrow_recipient(self) -> Path:  # age1...
        return self.cloud_dir / "escrow.pub"

    @property
    def trust_root(self) -> Path:
        return self.cloud_dir / "trust-root.json"

    @property
    def court_registry(self) -> Path:  # JSON: court id -> Ed25519 public key
        return self.cloud_dir / "courts.json"

    @property
    def test_courts_dir(self) -> Path:  # for testers: the courts' private keys
        return self.root / "courts"

    def court_key(self, court_id: str) -> Path:  # for testers: the court's private key
        return self.test_courts_dir / f"{court_id}.key"

    @property
    def off_host_dirs(self) -> tuple[Path, ...]:
        """What `init` leaves beside the deployment that the service host must not keep:
        the root keys, the test court's and the test reviewers' (ADR 0013; `serve`
        refuses to start while it can read them)."""
        return (self.offline_root_dir, self.test_courts_dir, self.test_reviewers_dir)

    @property
    def store_url_file(self) -> Path:
        return self.cloud_dir / "store-url"

    @property
    def evidence_dir(self) -> Path:
        return self.cloud_dir / "evidence"

    @property
    def devices_dir(self) -> Path:
        return self.root / "devices"

    def device_record(self, device_id: str) -> Path:
        """Public parts the cloud keeps: identity.pub, transport.pub, owner.pub, mqtt.pem,
        owner-mqtt.pem."""
        return self.devices_dir / device_id

    def owner_mqtt_cert(self, device_id: str) -> Path:
        """The owner's MQTT certificate in the device's record: written last by `enroll`,
        so the broker's ACL grants an owner user only to a completely enrolled device."""
        return self.device_record(device_id) / "owner-mqtt.pem"

    def device_bundle(self, device_id: str) -> BundleLayout:
        """Default place of the bundle handed to the Pi (holds device private keys;
        the operator moves it to the device and deletes it here)."""
        return BundleLayout(self.devices_dir / device_id / "bundle")

    def owner_bundle(self, device_id: str) -> OwnerBundleLayout:
        """Default place of the owner's MQTT credential (holds the owner's private key;
        the operator hands it to the owner and deletes it here)."""
        return OwnerBundleLayout(self.devices_dir / device_id / "owner")

    def agency_dir(self, name: str) -> Path:
        return self.root / "agencies" / name


@dataclass(frozen=True, slots=True)
class BundleLayout:
    """What a Pi receives: exactly what it needs and never a cloud private key."""

    root: Path

    @property
    def device_id_file(self) -> Path:
        return self.root / "device-id"

    @property
    def identity_key(self) -> Path:  # Ed25519 private key, PKCS#8 PEM, 0600
        return self.root / "identity.key"

    @property
    def identity_pub(self) -> Path:
        return self.root / "identity.pub"

    @property
    def transport_identity(self) -> Path:  # age identity, 0600
        return self.root / "transport.key"

    @property
    def transport_recipient(self) -> Path:
        return self.root / "transport.pub"

    @property
    def mqtt_cert(self) -> Path:
        return self.root / "mqtt.pem"

    @property
    def mqtt_key(self) -> Path:
        return self.root / "mqtt.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def trust_root(self) -> Path:
        return self.root / "trust-root.json"

    @property
    def escrow_recipient(self) -> Path:
        return self.root / "escrow.pub"

    @property
    def owner_recipient(self) -> Path:
        return self.root / "owner.pub"

    @property
    def config(self) -> Path:  # agent config TOML pre-filled with the above paths
        return self.root / "agent.toml"


@dataclass(frozen=True, slots=True)
class OwnerBundleLayout:
    """What the owner's application receives: an MQTT identity (CN ``owner.<id>``) that
    reads one device's notices and status. No device key, no cloud key."""

    root: Path

    @property
    def device_id_file(self) -> Path:
        return self.root / "device-id"

    @property
    def mqtt_cert(self) -> Path:
        return self.root / "mqtt.pem"

    @property
    def mqtt_key(self) -> Path:  # ECDSA P-256 private key, PKCS#8 PEM, 0600
        return self.root / "mqtt.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def config(self) -> Path:  # owner.toml: prefix, broker host and port, the two topics
        return self.root / "owner.toml"
