"""Epoch vault keys: one X25519 key pair per epoch, the private half escrowed then dropped.

At each epoch start the keeper generates an identity (pyrage), seals its
``AGE-SECRET-KEY-1...`` line to the cloud's escrow recipient, stores the escrow message
durably in the outbox, records the epoch (id, start, end, recipient) in the index, and
keeps only the recipient. The order matters: a crash before the outbox write leaves an
epoch nobody used; a crash after it leaves an escrowed epoch with no clips. The secret
never reaches the disk in plaintext. A restart always starts a new epoch (the old
private half is gone); a clock that leaves the current epoch's span in either direction
(a Pi syncing its clock after boot) also starts a new one, so a clip's start always lies
inside its epoch. Epoch ids are ``<unix start seconds>-<8 hex random>``.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyrage

from device.vault.agekeys import X25519Recipient
from device.vault.errors import EscrowError, InvalidAgeKey
from device.vault.index import ClipIndex, EpochRecord
from device.vault.outbox import EscrowOutbox
from protocol.errors import MessageError


@dataclass(frozen=True, slots=True)
class Epoch:
    id: str
    start: datetime
    end: datetime
    recipient: str

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


def escrow_message(device_id: str, epoch: Epoch, sealed: bytes) -> bytes:
    """The escrow payload of docs/architecture.md, built by `protocol.messages`.

    Raises EscrowError when the protocol would refuse it (e.g. a malformed device id).
    """
    # Imported at the first escrow, not at start-up: the protocol's messages bring the
    # JOSE and x509 stack (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
    from protocol.messages import EscrowMessage

    message = EscrowMessage(
        device=device_id,
        epoch=epoch.id,
        start=epoch.start,
        end=epoch.end,
        recipient=epoch.recipient,
        sealed=base64.b64encode(sealed).decode("ascii"),
    )
    try:
        return message.to_bytes()
    except MessageError as exc:
        raise EscrowError(f"escrow message for epoch {epoch.id} refused: {exc}") from exc


class EpochKeeper:
    """Hands out the current epoch, rotating it at its end.

    Raises InvalidAgeKey for a bad escrow recipient (at construction), EscrowError when
    a key cannot be generated or sealed, OutboxError / VaultIndexError from the disk.
    """

    def __init__(
        self,
        index: ClipIndex,
        outbox: EscrowOutbox,
        escrow_recipient: str,
        epoch_s: int,
        clock: Callable[[], datetime],
        *,
        device_id: str,
    ) -> None:
        if epoch_s < 1:
            raise ValueError("epoch_s must be at least one second")
        X25519Recipient.parse(escrow_recipient)  # fail at start-up, not at the first clip
        try:
            self._escrow = pyrage.x25519.Recipient.from_str(escrow_recipient)
        except Exception as exc:  # pyrage raises its own RecipientError
            raise InvalidAgeKey(f"escrow recipient rejected by pyrage: {exc}") from exc
        self._index = index
        self._outbox = outbox
        self._epoch_s = epoch_s
        self._clock = clock
        self._device_id = device_id
        self._current: Epoch | None = None
        self._lock = threading.Lock()

    def current(self) -> Epoch:
        """The epoch covering the clock's now, starting a new one when needed."""
        with self._lock:
            now = self._clock()
            if self._current is None or not self._current.contains(now):
                self._current = self._start(now)
            return self._current

    @property
    def outbox(self) -> EscrowOutbox:
        """The durable outbox this keeper escrows each new epoch's sealed key into."""
        return self._outbox

    @property
    def active(self) -> Epoch | None:
        """The epoch in use, without rotating (None before the first `current`)."""
        return self._current

    def _start(self, now: datetime) -> Epoch:
        start = now.astimezone(UTC).replace(microsecond=0)
        end = start + timedelta(seconds=self._epoch_s)
        epoch_id = f"{int(start.timestamp())}-{secrets.token_hex(4)}"
        try:
            identity = pyrage.x25519.Identity.generate()
            recipient = str(identity.to_public())
            sealed = pyrage.encrypt(str(identity).encode("ascii"), [self._escrow])
        except Exception as exc:  # pyrage's errors are not part of our hierarchy
            raise EscrowError(f"cannot create the vault key for epoch {epoch_id}: {exc}") from exc
        finally:
            identity = None  # drop the private half; only the sealed blob remains
        epoch = Epoch(epoch_id, start, end, recipient)
        self._outbox.put(epoch_id, escrow_message(self._device_id, epoch, sealed))
        self._index.add_epoch(EpochRecord(epoch_id, start, end, recipient))
        return epoch
