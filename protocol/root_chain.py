"""The trust roots the cloud publishes to a device, and the device's rule for applying them.

The cloud publishes, retained on ``{prefix}/{device}/trust-root`` (QoS 1), the chain of
trust roots after the first: ``{"v": 1, "roots": ["<standard base64 of a signed root>",
...]}`` in rising version order, at most `MAX_ROOTS`. A retained message holds only the
latest publish, so the chain lets a device that was offline for several rotations catch
up. `apply_chain` is pure: it skips the roots the device already has and applies each
later one with `update_any_trust_root` (version + 1, a threshold of the old and of the
new root keys, unexpired), stopping at the first it refuses; what it applied stays
applied. docs/adr/0013-trust-root-v2.md section 6.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from protocol import _schema as s
from protocol.errors import RejectionCode, TrustRootError
from protocol.trust_root_v2 import AnyTrustRoot, update_any_trust_root

CHAIN_VERSION: Final = 1
MAX_ROOTS: Final = 16
MAX_CHAIN_BYTES: Final = 256 * 1024  # the device link's payload cap


def encode_chain(roots: Sequence[bytes]) -> bytes:
    """The retained payload for `roots` (signed root documents, rising versions): the last
    `MAX_ROOTS` that fit in `MAX_CHAIN_BYTES`, oldest dropped first."""
    kept = list(roots)[-MAX_ROOTS:]
    while True:
        payload = json.dumps(
            {"v": CHAIN_VERSION, "roots": [base64.b64encode(r).decode("ascii") for r in kept]},
            separators=(",", ":"),
        ).encode("ascii")
        if len(payload) <= MAX_CHAIN_BYTES or len(kept) <= 1:
            return payload
        kept = kept[1:]


def parse_chain(data: bytes) -> list[bytes]:
    """The root documents of a chain payload. Raises TrustRootError(oversized, malformed)."""
    if len(data) > MAX_CHAIN_BYTES:
        raise TrustRootError(RejectionCode.oversized,
                             f"trust root chain of {len(data)} bytes, the cap is {MAX_CHAIN_BYTES}")
    try:
        doc = s.obj(s.loads_strict(data), "trust root chain", frozenset({"v", "roots"}))
        if doc["v"] != CHAIN_VERSION or isinstance(doc["v"], bool):
            raise s.SchemaError(f"v must be {CHAIN_VERSION}")
        items = s.array(doc["roots"], "roots", max_len=MAX_ROOTS)
        out = []
        for item in items:
            if not isinstance(item, str):
                raise s.SchemaError("roots must hold base64 strings")
            out.append(base64.b64decode(item, validate=True))
    except s.SchemaError as exc:
        raise TrustRootError(RejectionCode.malformed, str(exc)) from None
    except (binascii.Error, ValueError):
        raise TrustRootError(RejectionCode.malformed, "a root is not standard base64") from None
    return out


@dataclass(frozen=True, slots=True)
class ChainOutcome:
    """The newest root reached, the documents applied (to persist), and the refusal that
    stopped the chain, if any."""

    root: AnyTrustRoot
    applied: tuple[tuple[int, bytes], ...]  # (version, document)
    refused: TrustRootError | None


def _version_of(data: bytes) -> int | None:
    try:
        doc = json.loads(data)
        version = doc["signed"]["version"]
    except (ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def apply_chain(current: AnyTrustRoot, roots: Sequence[bytes], *, now: datetime) -> ChainOutcome:
    """Apply each root newer than `current` in order by the rotation rule."""
    root = current
    applied: list[tuple[int, bytes]] = []
    for data in roots:
        version = _version_of(data)
        if version is not None and version <= root.version:
            continue  # the device has it already (or a later one)
        try:
            root = update_any_trust_root(root, data, now=now)
        except TrustRootError as exc:
            return ChainOutcome(root, tuple(applied), exc)
        applied.append((root.version, data))
    return ChainOutcome(root, tuple(applied), None)
