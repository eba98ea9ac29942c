"""Render the broker's config and ACL from the templates in ``deploy/mosquitto/``.

The templates are the reviewed source of truth; rendering only fills ``${...}`` fields
with values that were validated (`names`), so no operator input can add a directive or
an ACL line. The ACL's ``${owners}`` field is one `OWNER_STANZA` per enrolled device,
itself filled only with the checked prefix and device id. Raises `InvalidName` for a
value mosquitto could not read (a path with a space) or an unsafe prefix or device id,
and `DeploymentError` when a template is missing or names an unknown field.
The templates are read from the source tree (the supported install is a clone with
``pip install -e``); `template_dir` points elsewhere for other layouts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from cloud_stub.provision.errors import DeploymentError, InvalidName
from cloud_stub.provision.names import check_prefix, owner_mqtt_user

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
CONFIG_TEMPLATE = "mosquitto.conf.template"
ACL_TEMPLATE = "acl.template"
DEFAULT_AUTOSAVE_S = 30
# Whole MQTT packet: the 256 KiB payload cap of device and cloud plus 4 KiB for the topic
# and MQTT 5 properties. The broker disconnects a client that sends a larger packet.
MAX_PACKET_BYTES = 256 * 1024 + 4 * 1024
# The owner of one device: reads its notices and health, nothing else. Not a `pattern`:
# `%u` would have to be the device id, and the owner would inherit the device's writes.
# The `deny` comes first in mosquitto's check and takes back what the file's patterns
# would give the user `owner.<id>` as if it were a device (its own release to read; a
# result, escrow, status and notice under `owner.<id>`, which the cloud reads, to write).
OWNER_STANZA = Template(
    "user ${user}\n"
    "topic deny ${prefix}/${user}/#\n"
    "topic read ${prefix}/${device_id}/notice\n"
    "topic read ${prefix}/${device_id}/status\n"
)


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Where the broker finds its files and how it listens."""

    port: int
    bind_address: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    acl_file: Path
    persistence_dir: Path
    crl_file: Path  # broker/crl.pem: the CA's revocations (`cloud_stub.provision.revoke`)
    user: str = "mosquitto"
    autosave_interval: int = DEFAULT_AUTOSAVE_S
    max_packet_size: int = MAX_PACKET_BYTES


def check_config_value(name: str, value: str) -> str:
    """Return `value` if it fits one mosquitto config word: mosquitto cannot quote, so no
    whitespace or control character. Raises InvalidName otherwise."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidName(
            f"{name} {value!r} cannot go into the broker config: mosquitto reads it up to "
            "the first space and cannot quote (choose a path without spaces)"
        )
    return value


def _render(template_dir: Path, name: str, fields: dict[str, str]) -> str:
    path = template_dir / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeploymentError(f"{path}: cannot read the broker template: {exc}") from exc
    try:
        return Template(text).substitute(fields)
    except KeyError as exc:
        raise DeploymentError(f"{path}: template field {exc} has no value") from exc
    except ValueError as exc:
        raise DeploymentError(f"{path}: {exc}") from exc


def render_config(files: BrokerFiles, *, template_dir: Path = TEMPLATE_DIR) -> str:
    """mosquitto.conf text for `files`."""
    fields = {
        "port": str(files.port),
        "bind_address": files.bind_address,
        "ca_file": str(files.ca_file),
        "cert_file": str(files.cert_file),
        "key_file": str(files.key_file),
        "acl_file": str(files.acl_file),
        "persistence_dir": str(files.persistence_dir),
        "crl_file": str(files.crl_file),
        "user": files.user,
        "autosave_interval": str(files.autosave_interval),
        "max_packet_size": str(files.max_packet_size),
    }
    for key, value in fields.items():
        check_config_value(key, value)
    return _render(template_dir, CONFIG_TEMPLATE, fields)


def render_owner_stanzas(prefix: str, device_ids: Iterable[str]) -> str:
    """One `OWNER_STANZA` per device id, sorted, each id once.

    Raises InvalidName for an unsafe prefix or a string that is not a device id.
    """
    prefix = check_prefix(prefix)
    return "".join(
        # owner_mqtt_user checks the id before it reaches the text.
        OWNER_STANZA.substitute(user=owner_mqtt_user(device_id), prefix=prefix,
                                device_id=device_id)
        for device_id in sorted(set(device_ids))
    )


def render_acl(
    prefix: str, device_ids: Iterable[str] = (), *, template_dir: Path = TEMPLATE_DIR
) -> str:
    """ACL text for the topic `prefix` with an owner user for each of `device_ids`.

    Raises InvalidName for an unsafe prefix or device id.
    """
    fields = {"prefix": check_prefix(prefix), "owners": render_owner_stanzas(prefix, device_ids)}
    return _render(template_dir, ACL_TEMPLATE, fields)
