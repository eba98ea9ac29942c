"""The device's trust root: the bundle's, then every later one the cloud published.

The bundle's root is initial trust (`load_any_trust_root`). Each later root arrives in
the retained chain on the device's ``trust-root`` topic and is applied only by the
rotation rule (`protocol.root_chain.apply_chain`: version + 1, a threshold of the old and
of the new root keys, unexpired); an applied root is kept as
``{state}/release/trust-roots/<version>.json`` (written to a temporary file, fsync'd,
renamed) and applied again by the same rule at the next start, so a restart never goes
back to an older root. docs/adr/0013-trust-root-v2.md section 6.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path

from device.config import AgentConfig
from device.errors import ConfigError
from device.release.audit import AuditLog
from device.release.layout import ReleaseLayout
from protocol.errors import TrustRootError
from protocol.root_chain import ChainOutcome, apply_chain, parse_chain
from protocol.trust_root import MAX_ROOT_BYTES
from protocol.trust_root_v2 import AnyTrustRoot, load_any_trust_root

log = logging.getLogger(__name__)


class RootKeeper:
    """Loads, updates and persists the device's trust root."""

    def __init__(self, bundle_root: Path, directory: Path) -> None:
        self.bundle_root = bundle_root
        self.directory = directory

    def _saved(self) -> list[bytes]:
        try:
            names = sorted(p.name for p in self.directory.glob("*.json"))
        except OSError:
            return []
        out = []
        for name in names:
            with (self.directory / name).open("rb") as fh:
                out.append(fh.read(MAX_ROOT_BYTES + 1))
        return out

    def load(self, now: datetime) -> AnyTrustRoot:
        """The bundle's root with every saved later root applied again.

        Raises ConfigError when the bundle's root or a saved root is refused: the device
        never falls back to an older root than one it accepted.
        """
        path = self.bundle_root
        try:
            root = load_any_trust_root(path.read_bytes(), now=now)
        except OSError as exc:
            raise ConfigError(f"cannot read trust root {path}: {exc.strerror}") from exc
        except TrustRootError as exc:
            raise ConfigError(f"trust root {path} refused: {exc}") from exc
        try:
            saved = self._saved()
        except OSError as exc:
            raise ConfigError(f"cannot read the saved trust roots in {self.directory}: "
                              f"{exc.strerror}") from exc
        outcome = apply_chain(root, saved, now=now)
        if outcome.refused is not None:
            raise ConfigError(
                f"a saved trust root in {self.directory} is refused now: {outcome.refused}"
            )
        return outcome.root

    def receive(self, current: AnyTrustRoot, payload: bytes, now: datetime) -> ChainOutcome:
        """Apply a published chain; persist what was applied. Raises TrustRootError for a
        payload that is not a chain, OSError when the disk refuses."""
        outcome = apply_chain(current, parse_chain(payload), now=now)
        for version, data in outcome.applied:
            self._persist(data, version)
        return outcome

    def apply_published(
        self, current: AnyTrustRoot, payload: bytes, now: datetime, audit: AuditLog
    ) -> AnyTrustRoot:
        """Apply a published chain of trust roots by the rotation rule and audit the
        outcome; the root in force afterwards. A refused root leaves the current one in
        force. Raises only what the audit log raises."""
        try:
            outcome = self.receive(current, payload, now)
        except TrustRootError as exc:
            audit.append("trust_root", {"status": "refused", "version": current.version,
                                        "code": exc.code.value, "detail": exc.detail[:300]})
            log.warning("trust root chain refused: %s", exc)
            return current
        except OSError as exc:
            log.error("trust root not saved, kept version %d: %s", current.version, exc)
            return current
        if outcome.applied:
            audit.append("trust_root", {"status": "applied", "version": outcome.root.version,
                                        "code": "", "detail": ""})
            log.info("trust root version %d applied", outcome.root.version)
        refused = outcome.refused
        if refused is not None:
            audit.append("trust_root", {"status": "refused", "version": outcome.root.version,
                                        "code": refused.code.value,
                                        "detail": refused.detail[:300]})
            log.warning("trust root refused, version %d kept: %s", outcome.root.version, refused)
        return outcome.root if outcome.applied else current

    def _persist(self, data: bytes, version: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{version:08d}.json"
        temp = self.directory / f".{version:08d}.json.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        with contextlib.suppress(OSError):
            os.fsync(dfd)
        os.close(dfd)


def load_root(config: AgentConfig, now: datetime) -> AnyTrustRoot:
    """The trust root named in `[release] trust_root`, with every later root the device
    accepted since (`device.release.roots`). Raises ConfigError."""
    path = config.release.trust_root
    if path is None:
        raise ConfigError("[release] trust_root is required when mqtt.enabled is true")
    return root_keeper(config).load(now)


def log_seed_path(config: AgentConfig) -> Path | None:
    """The first release-log checkpoint enrolment put beside the trust root in the
    device bundle (`release-log-checkpoint`; docs/protocol.md section 11)."""
    path = config.release.trust_root
    return None if path is None else path.parent / "release-log-checkpoint"


def root_keeper(config: AgentConfig) -> RootKeeper:
    """Raises ConfigError when `[release] trust_root` is not set."""
    path = config.release.trust_root
    if path is None:
        raise ConfigError("[release] trust_root is required when mqtt.enabled is true")
    return RootKeeper(path, ReleaseLayout(config.agent.state_dir).trust_roots)
