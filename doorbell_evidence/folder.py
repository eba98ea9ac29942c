"""The layout of a downloaded evidence folder, one directory per release token::

    DIR/trust-root.json              the deployment's trust root
    DIR/request.json                 the listing as the API returned it
    DIR/<jti>/token.jws              the release token the device acted on
    DIR/<jti>/manifest.jws           the device-signed manifest of what it produced
    DIR/<jti>/device-identity.json   the deployment's certificate of the device's key
    DIR/<jti>/<clip id>.age          the clips, sealed to the agency's key
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRUST_ROOT = "trust-root.json"
LISTING = "request.json"
TOKEN = "token.jws"  # noqa: S105 (a file name)
MANIFEST = "manifest.jws"
DEVICE_IDENTITY = "device-identity.json"
CLIP_SUFFIX = ".age"


@dataclass(frozen=True, slots=True)
class TokenDir:
    """One token's directory in the folder."""

    path: Path

    @property
    def jti(self) -> str:
        return self.path.name

    @property
    def token(self) -> Path:
        return self.path / TOKEN

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def device_identity(self) -> Path:
        return self.path / DEVICE_IDENTITY

    def clip(self, clip_id: str) -> Path:
        return self.path / f"{clip_id}{CLIP_SUFFIX}"

    def clip_files(self) -> list[Path]:
        return sorted(p for p in self.path.iterdir() if p.name.endswith(CLIP_SUFFIX))


@dataclass(frozen=True, slots=True)
class EvidenceFolder:
    root: Path

    @property
    def trust_root(self) -> Path:
        return self.root / TRUST_ROOT

    @property
    def listing(self) -> Path:
        return self.root / LISTING

    def token_dir(self, jti: str) -> TokenDir:
        return TokenDir(self.root / jti)

    def token_dirs(self) -> list[TokenDir]:
        return sorted(
            (TokenDir(p) for p in self.root.iterdir() if p.is_dir() and (p / MANIFEST).exists()),
            key=lambda d: d.jti,
        )
