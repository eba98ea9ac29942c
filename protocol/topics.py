"""MQTT topic names of the v1 wire contract (docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "doorbell/v1"


def _check_segment(name: str, value: str) -> None:
    if not value or any(c in value for c in "/+#\x00") or value != value.strip():
        raise ValueError(f"{name} {value!r} is not a valid MQTT topic segment")


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """The five topics of one device under a prefix.

    Raises ValueError when the device id could escape its own subtree
    (it contains ``/``, ``+``, ``#`` or NUL, or is empty).
    """

    device_id: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _check_segment("device id", self.device_id)
        if not self.prefix or any(c in self.prefix for c in "+#\x00"):
            raise ValueError(f"topic prefix {self.prefix!r} is not valid")

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    @property
    def release(self) -> str:
        return f"{self.base}/release"

    @property
    def result(self) -> str:
        return f"{self.base}/result"

    @property
    def escrow(self) -> str:
        return f"{self.base}/escrow"

    @property
    def escrow_ack(self) -> str:
        """cloud -> device: the cloud has stored an escrowed epoch key (ADR 0003)."""
        return f"{self.base}/escrow-ack"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def notice(self) -> str:
        return f"{self.base}/notice"

    @property
    def trust_root(self) -> str:
        """cloud -> device, retained: the chain of newer trust roots (ADR 0013)."""
        return f"{self.base}/trust-root"


def all_devices(prefix: str, leaf: str) -> str:
    """A subscription filter for one leaf topic of every device, for the cloud."""
    return f"{prefix}/+/{leaf}"
