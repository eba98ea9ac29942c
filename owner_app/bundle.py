"""The owner bundle, read and checked before anything connects.

An owner bundle (`protocol.bundle.OwnerBundleLayout`) is what enrolment hands the
owner: ``device-id``, ``mqtt.pem`` and ``mqtt.key`` (the MQTT user ``owner.<id>``),
``ca.pem`` and ``owner.toml``. Loading it fails closed with a `BundleError` naming the
file and the problem: a missing file, an ``owner.toml`` with an unknown or ill-typed key,
topics that are not this device's notice and status topics under the prefix, or a
certificate that is not the owner's of this device. The TLS context it builds trusts
only the bundle's CA and checks the broker's name, as the cloud stub's does.
"""

from __future__ import annotations

import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from owner_app.errors import BundleError
from protocol.bundle import OwnerBundleLayout
from protocol.keys import private_session_id
from protocol.tls import TlsMaterialError, client_context
from protocol.topics import DeviceTopics

MAX_FILE_BYTES: Final = 64 * 1024  # every bundle file is a few KiB; refuse anything huge
_CONFIG_KEYS: Final = frozenset({"prefix", "broker", "topics"})
_BROKER_KEYS: Final = frozenset({"host", "port"})
_TOPIC_KEYS: Final = frozenset({"notice", "status"})


@dataclass(frozen=True, slots=True)
class OwnerBundle:
    """A checked owner bundle: where the broker is, which device, which topics."""

    layout: OwnerBundleLayout
    device_id: str
    host: str
    port: int
    topics: DeviceTopics

    @property
    def user(self) -> str:
        return f"owner.{self.device_id}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def session_id(self) -> str:
        """The persistent session's client id: ``owner.<id>.<32 hex>`` from the key file
        (`protocol.keys.private_session_id`), so no other certificate holder can take
        the session and the notices queued in it. Raises BundleError."""
        return private_session_id(self.user, _read(self.layout.mqtt_key, self.layout.root))

    def tls_context(self) -> ssl.SSLContext:
        """Client TLS: trust only the bundle's CA, check the broker's name, TLS 1.2 at
        least, present the owner's certificate. Raises BundleError naming the files."""
        layout = self.layout
        try:
            return client_context(layout.ca_cert, layout.mqtt_cert, layout.mqtt_key)
        except TlsMaterialError as exc:
            raise BundleError(str(exc)) from None


def _read(path: Path, root: Path) -> bytes:
    if not path.exists():
        raise BundleError(
            f"owner bundle {root}: {path.name} is missing (an owner bundle holds device-id, "
            "mqtt.pem, mqtt.key, ca.pem and owner.toml)"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise BundleError(f"{path}: larger than {MAX_FILE_BYTES} bytes, not a bundle file")
    return data


def _table(value: Any, name: str, keys: frozenset[str], config: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{config}: {name} must be a table")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise BundleError(f"{config}: unknown key {name + '.' if name != 'owner.toml' else ''}"
                          f"{unknown[0]}")
    missing = sorted(keys - set(value))
    if missing:
        raise BundleError(f"{config}: {name} lacks {missing[0]}")
    return value


def _text(value: Any, name: str, config: Path) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise BundleError(f"{config}: {name} must be a non-empty string")
    return value


def _certificate(path: Path, root: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, root))
    except ValueError:
        raise BundleError(f"{path}: not a PEM certificate") from None


def load_bundle(root: Path) -> OwnerBundle:
    """Read and check the owner bundle in `root`. Raises BundleError."""
    layout = OwnerBundleLayout(root)
    if not root.is_dir():
        raise BundleError(f"owner bundle {root}: no such directory")
    raw_id = _read(layout.device_id_file, root).decode("utf-8", "replace").strip()
    config = layout.config
    try:
        document = tomllib.loads(_read(config, root).decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BundleError(f"{config}: not TOML ({exc})") from None
    item = _table(document, "owner.toml", _CONFIG_KEYS, config)
    broker = _table(item["broker"], "broker", _BROKER_KEYS, config)
    topics_item = _table(item["topics"], "topics", _TOPIC_KEYS, config)
    prefix = _text(item["prefix"], "prefix", config)
    host = _text(broker["host"], "broker.host", config)
    port = broker["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise BundleError(f"{config}: broker.port must be a port number (1-65535)")
    try:
        topics = DeviceTopics(raw_id, prefix)
    except ValueError as exc:
        raise BundleError(f"{layout.device_id_file}: {exc}") from None
    for leaf, expected in (("notice", topics.notice), ("status", topics.status)):
        if topics_item[leaf] != expected:
            raise BundleError(
                f"{config}: topics.{leaf} {topics_item[leaf]!r:.120} is not device "
                f"{raw_id}'s {leaf} topic {expected!r}"
            )
    cert = _certificate(layout.mqtt_cert, root)
    _certificate(layout.ca_cert, root)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    if common_name != f"owner.{raw_id}":
        raise BundleError(
            f"{layout.mqtt_cert}: issued to {common_name!r:.80}, not to owner.{raw_id}: "
            "not this device's owner certificate"
        )
    _read(layout.mqtt_key, root)
    return OwnerBundle(layout=layout, device_id=raw_id, host=host, port=port, topics=topics)
