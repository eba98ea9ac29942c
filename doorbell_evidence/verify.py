"""Check a downloaded evidence folder end to end. Pure: the folder's bytes, a trust root
and a clock in, a `FolderVerdict` out (in the manner of `protocol.token.verify_token`).

For each token directory, in this order, the first failure naming the file and the rule:

1. the device identity certificate carries a threshold of the trust root's root-role
   signatures (`protocol.device_identity`);
2. the manifest carries exactly one signature, by that certified key, and names that
   device (`protocol.manifest.verify_manifest`);
3. the release token passes the device's own acceptance rules for that device at the
   manifest's creation time (a threshold of release signatures, window and lifetime
   limits: `protocol.token.verify_token`), has the manifest's jti, and its window covers
   every clip of the manifest;
4. every clip of the manifest is in the folder with the manifest's size and sha256, and
   the folder holds no clip file the manifest does not list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from doorbell_evidence.folder import EvidenceFolder, TokenDir
from protocol.device_identity import verify_device_identity
from protocol.errors import (
    DeviceCertificateError,
    ManifestError,
    TokenRejected,
    TrustRootError,
)
from protocol.manifest import check_manifest_window, verify_manifest
from protocol.timefmt import format_time
from protocol.token import VerificationContext, verify_token
from protocol.trust_root import TrustRoot, load_trust_root

CHUNK = 1 << 20


class EvidenceProblem(Exception):
    """One rule failed; the message names the file and the rule."""


@dataclass(frozen=True, slots=True)
class ClipVerdict:
    clip_id: str
    sha256: str
    bytes: int
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    jti: str
    device: str
    basis: str
    case: str
    window: tuple[datetime, datetime]
    clips: tuple[ClipVerdict, ...]


@dataclass(slots=True)
class FolderVerdict:
    root_fingerprint: str  # sha256 of the trust root's bytes, to compare out of band
    tokens: list[TokenVerdict] = field(default_factory=list)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EvidenceProblem(f"{path}: missing ({what})") from None
    except OSError as exc:
        raise EvidenceProblem(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def load_root(data: bytes, source: Path, at: datetime) -> TrustRoot:
    try:
        return load_trust_root(data, now=at)
    except TrustRootError as exc:
        raise EvidenceProblem(f"{source}: the trust root is not acceptable: {exc}") from None


def verify_token_dir(tokens: TokenDir, root: TrustRoot) -> TokenVerdict:
    """Rules 1-4 for one token directory. Raises EvidenceProblem."""
    try:
        identity = verify_device_identity(
            _read(tokens.device_identity, "device identity certificate"), root
        )
    except DeviceCertificateError as exc:
        raise EvidenceProblem(f"{tokens.device_identity}: {exc}") from None
    try:
        manifest = verify_manifest(_read(tokens.manifest, "manifest"), identity.public_key)
    except ManifestError as exc:
        raise EvidenceProblem(
            f"{tokens.manifest}: {exc} (the certified key of {identity.device})"
        ) from None
    if manifest.device != identity.device:
        raise EvidenceProblem(
            f"{tokens.manifest}: names device {manifest.device}, the certificate "
            f"{identity.device}"
        )
    context = VerificationContext(
        device_id=identity.device, now=manifest.created, clock_synchronized=True
    )
    try:
        claims = verify_token(
            _read(tokens.token, "release token"), root=root, context=context, replay=None
        )
    except TokenRejected as exc:
        raise EvidenceProblem(
            f"{tokens.token}: not a valid token for {identity.device} at the manifest's "
            f"time {format_time(manifest.created)}: {exc}"
        ) from None
    if claims.jti != manifest.jti:
        raise EvidenceProblem(
            f"{tokens.manifest}: made under token {manifest.jti}, the folder's token is "
            f"{claims.jti}"
        )
    try:
        check_manifest_window(manifest, claims.window)
    except ManifestError as exc:
        raise EvidenceProblem(f"{tokens.manifest}: the token does not cover it: {exc}") from None
    clips = []
    listed = set()
    for clip in manifest.clips:
        path = tokens.clip(clip.clip_id)
        listed.add(path.name)
        if not path.is_file():
            raise EvidenceProblem(f"{path}: missing (clip {clip.clip_id} of the manifest)")
        sha, size = _sha256(path)
        if sha != clip.sha256 or size != clip.bytes:
            raise EvidenceProblem(
                f"{path}: sha256 {sha} ({size} bytes) is not the manifest's "
                f"{clip.sha256} ({clip.bytes} bytes): the file was changed"
            )
        clips.append(ClipVerdict(clip.clip_id, sha, size, clip.start, clip.end))
    extra = [p.name for p in tokens.clip_files() if p.name not in listed]
    if extra:
        raise EvidenceProblem(f"{tokens.path}: clip file(s) the manifest does not list: "
                              f"{', '.join(extra)}")
    return TokenVerdict(
        jti=claims.jti,
        device=identity.device,
        basis=claims.basis,
        case=f"{claims.case.docket} ({claims.case.authority})",
        window=(claims.window.start, claims.window.end),
        clips=tuple(clips),
    )


def verify_folder(
    folder: EvidenceFolder, *, at: datetime, trust_root: bytes | None = None
) -> FolderVerdict:
    """Check every token directory of `folder`. `trust_root` (bytes the agency holds)
    replaces the folder's own copy; `at` is when the trust root must be unexpired.
    Raises EvidenceProblem at the first failure."""
    source = folder.trust_root
    data = trust_root if trust_root is not None else _read(source, "trust root")
    root = load_root(data, source, at)
    verdict = FolderVerdict(root_fingerprint=hashlib.sha256(data).hexdigest())
    dirs = folder.token_dirs()
    if not dirs:
        raise EvidenceProblem(f"{folder.root}: no token directory with a manifest.jws")
    for tokens in dirs:
        verdict.tokens.append(verify_token_dir(tokens, root))
    return verdict
