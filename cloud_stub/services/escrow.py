"""Escrowed epoch keys: stored as the device sealed them, opened only into a token.

A device seals each epoch's private identity to the cloud's escrow recipient and sends
it on its ``escrow`` topic. The cloud stores the sealed blob as received (it never keeps
an opened identity), and opens blobs only inside `open_for_window`, which the release
path calls to seal them straight to the device's transport recipient. An opened identity
must be the private half of the recipient the device announced for that epoch, or the
blob is refused: a device (or a broker) cannot make the cloud deliver a key that does
not open that epoch's clips.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyrage
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.errors import ConfigError, HostileInputError, SigningError
from cloud_stub.store.models import EscrowedEpoch

MAX_SEALED_BYTES = 4096  # an age file holding one identity line is ~300 bytes
MAX_EPOCHS_PER_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class EpochEscrow:
    """An ``escrow`` message after the strict parser."""

    device_id: str
    epoch_id: str
    start: datetime
    end: datetime
    recipient: str
    sealed_b64: str


def load_escrow_identity(path: Path) -> pyrage.x25519.Identity:
    """Raises `ConfigError` when the escrow identity file is missing or not an identity."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the escrow identity: {exc}") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1:
        raise ConfigError(f"{path}: expected exactly one AGE-SECRET-KEY-1 line")
    try:
        return pyrage.x25519.Identity.from_str(lines[0])
    except pyrage.IdentityError as exc:
        raise ConfigError(f"{path}: not an age X25519 identity") from exc


def _decode_sealed(sealed_b64: str) -> bytes:
    try:
        raw = base64.b64decode(sealed_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HostileInputError("sealed is not standard base64", code="bad_escrow") from exc
    if len(raw) > MAX_SEALED_BYTES:
        raise HostileInputError(
            f"sealed epoch key is {len(raw)} bytes; the cap is {MAX_SEALED_BYTES}",
            code="bad_escrow",
        )
    return raw


class Escrow:
    """Keeps sealed epoch keys and opens them for a release."""

    def __init__(self, identity: pyrage.x25519.Identity) -> None:
        self._identity = identity

    def store(self, session: Session, item: EpochEscrow, now: datetime) -> bool:
        """Store a sealed epoch key; False when it was already stored (a redelivery).

        Raises `HostileInputError` when the blob is not base64 of a bounded age file, or
        when the same epoch arrives again with different content.
        """
        _decode_sealed(item.sealed_b64)
        existing = session.get(EscrowedEpoch, (item.device_id, item.epoch_id))
        if existing is not None:
            same = (existing.sealed, existing.recipient) == (item.sealed_b64, item.recipient)
            if not same:
                raise HostileInputError(
                    f"epoch {item.epoch_id} of {item.device_id} was already escrowed with"
                    " different content; keeping the first",
                    code="escrow_conflict",
                )
            return False
        session.add(
            EscrowedEpoch(
                device_id=item.device_id,
                epoch_id=item.epoch_id,
                start=item.start,
                end=item.end,
                recipient=item.recipient,
                sealed=item.sealed_b64,
                received_at=now,
            )
        )
        session.flush()
        return True

    def covering(self, session: Session, device_id: str, start: datetime, end: datetime,
                 lead: timedelta) -> list[EscrowedEpoch]:
        """Escrowed epochs of the device overlapping [start - lead, end]."""
        rows = session.execute(
            select(EscrowedEpoch)
            .where(
                EscrowedEpoch.device_id == device_id,
                EscrowedEpoch.start < end,
                EscrowedEpoch.end > start - lead,
            )
            .order_by(EscrowedEpoch.start)
        ).scalars().all()
        return list(rows)

    def open(self, rows: list[EscrowedEpoch]) -> dict[str, str]:
        """epoch id -> identity line, for sealing into a token at once.

        Raises `SigningError` when a blob does not open with the escrow identity or holds
        an identity that is not the announced epoch recipient's private half.
        """
        if len(rows) > MAX_EPOCHS_PER_TOKEN:
            raise SigningError(
                f"{len(rows)} epochs overlap the window; a token holds at most"
                f" {MAX_EPOCHS_PER_TOKEN}",
                code="too_many_epochs",
            )
        out: dict[str, str] = {}
        for row in rows:
            try:
                plain = pyrage.decrypt(base64.b64decode(row.sealed), [self._identity])
                identity = pyrage.x25519.Identity.from_str(plain.decode("ascii").strip())
            except (pyrage.DecryptError, pyrage.IdentityError, UnicodeDecodeError,
                    binascii.Error, ValueError) as exc:
                raise SigningError(
                    f"escrowed key of epoch {row.epoch_id} ({row.device_id}) does not open",
                    code="escrow_unreadable",
                ) from exc
            if str(identity.to_public()) != row.recipient:
                raise SigningError(
                    f"escrowed key of epoch {row.epoch_id} ({row.device_id}) is not the"
                    " announced epoch recipient's",
                    code="escrow_mismatch",
                )
            out[row.epoch_id] = str(identity)
        return out
