"""Publishes the release database's outbox (results, owner notices) on the MQTT link.

An item leaves the durable outbox only once the broker acknowledged it: acknowledgements
are checked on later passes, never waited for, and an item unacknowledged for
`timeout_s` is published again. A notice due later (a court's delayed notice) waits
for a synchronized clock. Both of the service's threads flush; the lock keeps one pass
at a time.
"""

from __future__ import annotations

import logging
import threading
import time

from device.clock import Clock
from device.errors import TransportError
from device.link import Delivery, MqttLink
from device.release.jobs import IMMEDIATE, JobStore

log = logging.getLogger(__name__)


class OutboxPublisher:
    """`flush()` publishes what is due; True when something progressed."""

    def __init__(self, jobs: JobStore, link: MqttLink, clock: Clock, *, timeout_s: float) -> None:
        self._jobs = jobs
        self._link = link
        self._clock = clock
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._in_flight: dict[int, tuple[Delivery, float]] = {}

    def flush(self) -> bool:
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        progressed = False
        for item_id, (delivery, sent_at) in list(self._in_flight.items()):
            if delivery.done():
                self._jobs.sent(item_id)
                del self._in_flight[item_id]
                progressed = True
            elif time.monotonic() - sent_at > self._timeout_s:
                del self._in_flight[item_id]  # sent again below
        if not self._link.connected():
            return progressed
        horizon = self._clock.now() if self._clock.synchronized() else IMMEDIATE
        for item in self._jobs.due(horizon):
            if item.id in self._in_flight:
                continue
            try:
                delivery = self._link.publish(item.topic, item.payload, qos=1, retain=item.retain)
            except TransportError as exc:
                log.info("outbox publish deferred: %s", exc)
                break
            self._in_flight[item.id] = (delivery, time.monotonic())
            progressed = True
        return progressed
