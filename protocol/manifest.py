"""The evidence manifest: which bytes a device produced for a token, signed by it.

A JWS in General JSON Serialization with one signature by the device identity key,
protected header ``{"alg": "Ed25519", "kid": <device kid>, "typ":
"doorbell-manifest+jws"}``, and the payload::

    {"v": 1, "jti": "...", "device": "...", "created": "<RFC 3339>",
     "clips": [{"clip_id", "start", "end", "bytes", "sha256"}, ...]}

where ``bytes`` and ``sha256`` describe the re-sealed file the cloud receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import _jws
from protocol import _schema as s
from protocol.errors import ManifestError
from protocol.keys import key_id
from protocol.timefmt import format_time, require_aware
from protocol.token_claims import Window

MANIFEST_TYP: Final = "doorbell-manifest+jws"
MANIFEST_VERSION: Final = 1
MAX_MANIFEST_BYTES: Final = 1024 * 1024
MAX_CLIPS: Final = 4096
MAX_CLIP_BYTES: Final = 2**40  # a sanity bound; the cloud applies the token's own cap

_CLIP_KEYS = frozenset({"clip_id", "start", "end", "bytes", "sha256"})
_MANIFEST_KEYS = frozenset({"v", "jti", "device", "created", "clips"})


@dataclass(frozen=True, slots=True)
class ManifestClip:
    """One re-sealed clip: its id, recorded time span, size and sha256 (of the file sent)."""

    clip_id: str
    start: datetime
    end: datetime
    bytes: int
    sha256: str

    def to_payload(self) -> dict[str, Any]:
        return {
            "clip_id": self.clip_id,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class EvidenceManifest:
    jti: str
    device: str
    clips: tuple[ManifestClip, ...]
    created: datetime

    def to_payload(self) -> dict[str, Any]:
        return {
            "v": MANIFEST_VERSION,
            "jti": self.jti,
            "device": self.device,
            "created": format_time(self.created),
            "clips": [clip.to_payload() for clip in self.clips],
        }


def _parse_payload(value: Any) -> EvidenceManifest:
    item = s.obj(value, "manifest", _MANIFEST_KEYS)
    if item["v"] != MANIFEST_VERSION or isinstance(item["v"], bool):
        raise s.SchemaError(f"v must be {MANIFEST_VERSION}")
    clips = []
    seen: set[str] = set()
    for index, raw in enumerate(s.array(item["clips"], "clips", max_len=MAX_CLIPS)):
        entry = s.obj(raw, f"clips[{index}]", _CLIP_KEYS)
        clip = ManifestClip(
            clip_id=s.identifier(entry["clip_id"], f"clips[{index}].clip_id"),
            start=s.instant(entry["start"], f"clips[{index}].start"),
            end=s.instant(entry["end"], f"clips[{index}].end"),
            bytes=s.integer(
                entry["bytes"], f"clips[{index}].bytes", minimum=1, maximum=MAX_CLIP_BYTES
            ),
            sha256=s.hex64(entry["sha256"], f"clips[{index}].sha256"),
        )
        if clip.end < clip.start:
            raise s.SchemaError(f"clips[{index}] ends before it starts")
        if clip.clip_id in seen:
            raise s.SchemaError(f"clip {clip.clip_id!r} is listed twice")
        seen.add(clip.clip_id)
        clips.append(clip)
    return EvidenceManifest(
        jti=s.identifier(item["jti"], "jti"),
        device=s.string(item["device"], "device", max_len=128),
        clips=tuple(clips),
        created=s.instant(item["created"], "created"),
    )


def sign_manifest(manifest: EvidenceManifest, key: Ed25519PrivateKey) -> bytes:
    """The signed manifest (JWS bytes) by the device identity `key`.

    Raises ValueError when the manifest would not pass `verify_manifest`'s schema (or a
    time is naive).
    """
    require_aware("created", manifest.created)
    payload = manifest.to_payload()
    try:
        _parse_payload(payload)
    except s.SchemaError as exc:
        raise ValueError(f"manifest would be refused: {exc}") from None
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    return _jws.encode(_jws.sign(raw, MANIFEST_TYP, [key]))


def verify_manifest(data: bytes, public_key: Ed25519PublicKey) -> EvidenceManifest:
    """Check the device's signature and parse the manifest strictly.

    Exactly one signature, by `public_key` (the device's enrolled identity), is accepted.
    Raises ManifestError naming the problem: oversized, malformed, wrong header, another
    key, or a signature that does not verify.
    """
    try:
        raw = _jws.parse(data, max_bytes=MAX_MANIFEST_BYTES)
        envelope = _jws.check_headers(raw, typ=MANIFEST_TYP)
    except _jws.JwsFormatError as exc:
        raise ManifestError(f"manifest {exc.stage}: {exc.detail}") from None
    if len(envelope.signatures) != 1:
        raise ManifestError("a manifest carries exactly one signature, by the device")
    signature = envelope.signatures[0]
    if signature.kid != key_id(public_key):
        raise ManifestError("manifest is signed by a key other than the device's identity")
    if not _jws.verify_one(public_key, signature):
        raise ManifestError("manifest signature does not verify")
    try:
        return _parse_payload(s.loads_strict(envelope.payload))
    except s.SchemaError as exc:
        raise ManifestError(f"manifest malformed: {exc}") from None


def check_manifest_window(manifest: EvidenceManifest, window: Window) -> None:
    """Every clip must overlap the token's window (a clip is released when any part of
    it falls inside). Raises ManifestError naming the first clip outside."""
    for clip in manifest.clips:
        if not window.overlaps(clip.start, clip.end):
            raise ManifestError(
                f"clip {clip.clip_id} ({format_time(clip.start)} to {format_time(clip.end)}) "
                f"lies outside the window {format_time(window.start)} to "
                f"{format_time(window.end)}"
            )
