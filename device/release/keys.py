"""The device's two secrets on the release side, read from `[keys]` and checked at setup.

- the identity key (Ed25519, PEM): signs evidence manifests and upload requests;
- the transport identity (age X25519, ``AGE-SECRET-KEY-1...``): opens the epoch keys a
  release token delivers.

Each file is refused, like ssh does, unless only its owner (the agent's user or root)
may read it: a key that others could read has leaked already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.config import AgentConfig, check_private_file
from device.errors import ConfigError
from protocol.errors import KeyFormatError
from protocol.keys import private_key_from_pem


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """The identity key and the transport identity, loaded and checked."""

    identity: Ed25519PrivateKey = field(repr=False)
    transport_identity: str = field(repr=False)

    @classmethod
    def load(cls, config: AgentConfig) -> DeviceKeys:
        """Both keys named in `[keys]`. Raises ConfigError."""
        return cls(load_identity_key(config), load_transport_identity(config))


def _read_secret(path: Path | None, what: str) -> bytes:
    """A private key file's bytes, refused unless only its owner may read it."""
    if path is None:
        raise ConfigError(f"[keys] {what} is required when mqtt.enabled is true")
    try:
        data = path.read_bytes()
        check_private_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"[keys] {what} refused: {exc}") from exc
    return data


def load_identity_key(config: AgentConfig) -> Ed25519PrivateKey:
    """The device identity key named in `[keys] identity_key`. Raises ConfigError."""
    path = config.keys.identity_key
    try:
        return private_key_from_pem(_read_secret(path, "identity_key"))
    except KeyFormatError as exc:
        raise ConfigError(f"[keys] identity_key {path} refused: {exc}") from exc


def load_transport_identity(config: AgentConfig) -> str:
    """The age identity named in `[keys] transport_identity`, checked now rather than at
    the first token. Raises ConfigError."""
    path = config.keys.transport_identity
    text = _read_secret(path, "transport_identity").decode("utf-8", errors="replace").strip()
    try:
        pyrage.x25519.Identity.from_str(text)
    except Exception as exc:  # pyrage raises its own IdentityError
        raise ConfigError(
            f"[keys] transport_identity {path} refused: not an age X25519 identity "
            "(AGE-SECRET-KEY-1...)"
        ) from exc
    return text
