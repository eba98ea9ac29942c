"""What the broker delivered, and the bounded queue between the network thread and the
worker that handles it.

The queue never grows past its size. When it is full, the network thread waits for room
(`wait_s`; meanwhile TCP stops reading and the broker holds the rest), then drops the
message unacknowledged: with a persistent session the broker delivers it again when the
session resumes. Every drop is counted (`dropped`) and logged. Once the queue is closed
nothing more is put on it, and the worker takes what is left, then `None`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass

POLL_S = 0.2  # how often a waiting network thread looks whether the queue was closed


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from the broker. `oversized` is the true size when the payload was
    above the session's cap (then `payload` is empty and the bytes were never kept)."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    retain: bool = False
    oversized: int = 0


class InboundQueue:
    """A bounded queue of `Inbound` messages with a drop policy.

    `wait_s` is how long the network thread waits for room before it drops a message:
    0 drops at once, None waits until the queue is closed.
    """

    def __init__(self, size: int, *, wait_s: float | None, log: logging.Logger) -> None:
        if size < 1:
            raise ValueError(f"an inbound queue holds at least one message, not {size}")
        self._queue: queue.Queue[Inbound | None] = queue.Queue(maxsize=size)
        self._wait_s = wait_s
        self._log = log
        self._closed = threading.Event()
        self.dropped = 0  # messages dropped, unacknowledged, because the queue was full

    @property
    def size(self) -> int:
        return self._queue.maxsize

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def put(self, item: Inbound) -> bool:
        """Queue `item` (network thread); False when it was dropped unacknowledged."""
        deadline = None if self._wait_s is None else time.monotonic() + self._wait_s
        while not self._closed.is_set():
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            try:
                if wait > 0:
                    self._queue.put(item, timeout=wait)
                else:
                    self._queue.put_nowait(item)
                return True
            except queue.Full:
                if deadline is not None and time.monotonic() >= deadline:
                    break
        if not self._closed.is_set():
            self.dropped += 1
            self._log.error(
                "inbound queue full; %s dropped unacknowledged (the broker delivers it again)",
                item.topic[:120],
            )
        return False

    def get(self, timeout: float | None) -> Inbound | None:
        """The next message, or None when none came within `timeout` seconds (None: wait
        until one comes) or the queue is closed and empty."""
        try:
            if self._closed.is_set():
                item = self._queue.get_nowait()
            else:
                item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:  # the wake-up `wake` or `close` left
            return self.get(0) if self._closed.is_set() else None
        return item

    def wake(self) -> None:
        """Make a worker waiting in `get` return None now (one that is not waiting gets
        None from its next `get`). A full queue needs no wake-up: its worker is busy."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def close(self) -> None:
        """Take no more messages and wake a worker waiting in `get`."""
        self._closed.set()
        # When the queue is full the worker is not waiting: it finds it closed once drained.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
