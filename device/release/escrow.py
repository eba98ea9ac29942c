"""Publishes the vault's escrow outbox on the `escrow` topic; drops a blob on `escrow-ack`.

The vault writes one sealed epoch key per epoch into a durable outbox; nothing leaves it
until the cloud acknowledges that epoch on `escrow-ack` (ADR 0003). Unacknowledged blobs
are published again every `resend_s` seconds and after every reconnect, so a message lost
with a broker restart is sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from device.errors import DoorbellError, TransportError
from device.link import MqttLink
from protocol.errors import MessageError
from protocol.messages import parse_escrow_ack

log = logging.getLogger(__name__)


class _Item(Protocol):
    @property
    def epoch_id(self) -> str: ...

    @property
    def payload(self) -> bytes: ...


class EscrowSource(Protocol):
    """What the publisher needs of the vault's `EscrowOutbox`."""

    def pending(self) -> Sequence[_Item]: ...

    def acknowledge(self, epoch_id: str) -> bool: ...

    def on_put(self, listener: Callable[[], None]) -> Callable[[], None]: ...


class EscrowPublisher:
    """Moves escrow blobs from the vault's outbox to the cloud and back out on ack."""

    def __init__(
        self,
        outbox: EscrowSource,
        link: MqttLink,
        topic: str,
        *,
        resend_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._topic = topic
        self._resend_s = resend_s
        self._monotonic = monotonic
        self._sent_at: dict[str, float] = {}
        self._waiting = True  # until a flush has looked
        # A new epoch's blob wakes the link's worker, whose next pass flushes it at once.
        self._unwatch = outbox.on_put(link.wake)

    def close(self) -> None:
        """Stop waking the link's worker for new blobs (the service is stopping)."""
        self._unwatch()

    @property
    def waiting(self) -> bool:
        """True unless the last flush found the outbox empty: blobs are waiting to be
        sent or acknowledged, or nobody has looked yet."""
        return self._waiting

    def reset(self) -> None:
        """Send everything again at the next flush (after a reconnect)."""
        self._sent_at.clear()

    def flush(self) -> int:
        """Publish every blob not sent within `resend_s`; returns how many were sent.

        Stops quietly at the first transport failure (the next flush retries).
        """
        if not self._link.connected():
            return 0
        sent = 0
        now = self._monotonic()
        try:
            items = list(self._outbox.pending())
        except DoorbellError as exc:
            log.error("escrow outbox unreadable: %s", exc)
            self._waiting = True
            return 0
        self._waiting = bool(items)
        for item in items:
            last = self._sent_at.get(item.epoch_id)
            if last is not None and now - last < self._resend_s:
                continue
            try:
                self._link.publish(self._topic, item.payload, qos=1, retain=False)
            except TransportError as exc:
                log.info("escrow publish deferred: %s", exc)
                break
            self._sent_at[item.epoch_id] = now
            sent += 1
        return sent

    def on_ack(self, payload: bytes) -> str | None:
        """Handle an `escrow-ack`; returns the acknowledged epoch id, or None if refused."""
        try:
            epoch = parse_escrow_ack(payload).epoch
        except MessageError as exc:
            log.warning("ignoring escrow-ack: %s", exc)
            return None
        try:
            self._outbox.acknowledge(epoch)
        except DoorbellError as exc:
            log.error("cannot drop acknowledged escrow blob %s: %s", epoch, exc)
            return None
        self._sent_at.pop(epoch, None)
        return epoch
