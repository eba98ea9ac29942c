"""The service's settings: the deployment directory's ``deployment.toml`` plus limits.

`load_deployment` reads the documented keys of ``deployment.toml`` into a closed model:
an unknown or ill-typed key raises `ConfigError` naming the key and the file.
`ServiceLimits` holds the caps the API and the MQTT consumer enforce, with their units.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud_stub.errors import ConfigError
from protocol.bundle import DeploymentLayout


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSection(_Section):
    host: str = "localhost"
    port: int = Field(default=8883, ge=1, le=65535)


class ApiSection(_Section):
    url: str = "http://127.0.0.1:8080"


class RedeliverySection(_Section):
    """When a published token with no device result yet is published again (ADR 0011):
    ``initial_s`` after the first publish, then doubling up to ``max_s``, never at or
    after the token's ``exp``. Whole seconds."""

    initial_s: int = Field(default=60, ge=1, le=86400, strict=True)
    max_s: int = Field(default=3600, ge=1, le=7 * 86400, strict=True)

    @model_validator(mode="after")
    def _cap_not_below_start(self) -> RedeliverySection:
        if self.max_s < self.initial_s:
            raise ValueError(
                f"max_s ({self.max_s}) must not be below initial_s ({self.initial_s})"
            )
        return self


class DeploymentSettings(_Section):
    cloud_id: str = "cloud-stub"
    prefix: str = "doorbell/v1"
    broker: BrokerSection = BrokerSection()
    api: ApiSection = ApiSection()
    redelivery: RedeliverySection = RedeliverySection()


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Caps on what outsiders can make the service hold in memory or on disk."""

    max_json_body: int = 64 * 1024  # bytes: a request for footage, a decision, a manifest
    max_chunk: int = 8 * 1024 * 1024  # bytes: one PUT of an evidence upload
    max_manifest: int = 1024 * 1024  # bytes: a signed manifest (protocol.manifest's cap)
    max_evidence_per_token: int = 2 * 1024**3  # bytes: everything uploaded under one token
    max_clips_per_token: int = 10_000  # files in one manifest
    max_mqtt_payload: int = 256 * 1024  # bytes: escrow blobs and results are small
    request_skew_s: int = 300  # seconds: a device request's timestamp window
    epoch_lead_s: int = 3600  # seconds: epochs starting this long before a window overlap it
    # Approvals and re-issues that check, seal and sign at the same time; the rest wait
    # their turn, so device results are recorded meanwhile (docs/architecture.md,
    # "One approval signs at a time").
    signing_at_once: int = 1


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_deployment(text: str, source: Path) -> DeploymentSettings:
    """Parse ``deployment.toml`` text. Raises `ConfigError` naming the key and the file."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return DeploymentSettings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _dotted(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{source}: unknown key {where!r}") from exc
        raise ConfigError(f"{source}: key {where!r}: {err['msg']}") from exc


def load_deployment(layout: DeploymentLayout) -> DeploymentSettings:
    """Read the deployment's settings. Raises `ConfigError` when missing or ill-formed."""
    try:
        text = layout.settings.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{layout.settings}: cannot read the deployment settings: {exc}") from exc
    return parse_deployment(text, layout.settings)


def default_store_url(layout: DeploymentLayout) -> str:
    """The store URL from ``cloud/store-url`` when present, else SQLite inside the deployment."""
    try:
        url = layout.store_url_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        url = ""
    except OSError as exc:
        raise ConfigError(f"{layout.store_url_file}: cannot read: {exc}") from exc
    return url or f"sqlite:///{layout.cloud_dir / 'store.sqlite3'}"
