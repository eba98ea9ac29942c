"""The pre-filled ``agent.toml`` of a device bundle (`device.config.AgentConfig`).

Paths point at where the bundle's files will be on the device (`install_dir`, by default
``/etc/doorbell``, the agent's default config directory). Only the sections enrolment
knows are written; everything else keeps the agent's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from protocol.bundle import BundleLayout

DEFAULT_INSTALL_DIR = Path("/etc/doorbell")


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfigValues:
    device_id: str
    install_dir: Path
    state_dir: Path | None
    prefix: str
    broker_host: str
    broker_port: int
    owner_recipient: str
    escrow_recipient: str


def render_agent_config(values: AgentConfigValues) -> bytes:
    """TOML bytes that `device.config.parse_config` accepts."""
    where = BundleLayout(values.install_dir)
    agent: dict[str, Any] = {"device_id": values.device_id}
    if values.state_dir is not None:
        agent["state_dir"] = str(values.state_dir)
    document: dict[str, Any] = {
        "agent": agent,
        "keys": {
            "owner_recipient": values.owner_recipient,
            "escrow_recipient": values.escrow_recipient,
            "identity_key": str(where.identity_key),
            "transport_identity": str(where.transport_identity),
        },
        "mqtt": {
            "enabled": True,
            "host": values.broker_host,
            "port": values.broker_port,
            "prefix": values.prefix,
            "ca_cert": str(where.ca_cert),
            "client_cert": str(where.mqtt_cert),
            "client_key": str(where.mqtt_key),
        },
        "release": {
            "trust_root": str(where.trust_root),
        },
    }
    header = (
        f"# sealed-doorbell agent configuration for device {values.device_id}.\n"
        "# Written by `cloud-stub devices enroll`; paths are where the bundle is installed.\n\n"
    )
    return (header + tomli_w.dumps(document)).encode("utf-8")
