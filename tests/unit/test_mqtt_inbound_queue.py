"""The MQTT session's bounded inbound queue (mqtt_session/inbound.py): the three drop
policies the links use, and a close that wakes the worker after it drained the queue."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from mqtt_session import Inbound, InboundQueue

LOG = logging.getLogger("tests.mqtt_inbound_queue")


def message(n: int) -> Inbound:
    return Inbound(f"t/{n}", b"x", mid=n, qos=1)


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        InboundQueue(0, wait_s=0, log=LOG)


def test_no_wait_drops_at_once_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    inbound = InboundQueue(1, wait_s=0, log=LOG)
    assert inbound.put(message(1))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        assert not inbound.put(message(2))
    assert time.monotonic() - started < 1.0
    assert inbound.dropped == 1
    assert any("t/2" in r.getMessage() and "unacknowledged" in r.getMessage()
               for r in caplog.records)
    assert inbound.get(0) == message(1)  # the first one was kept


def test_a_bounded_wait_drops_only_after_it() -> None:
    inbound = InboundQueue(1, wait_s=0.3, log=LOG)
    inbound.put(message(1))
    started = time.monotonic()
    assert not inbound.put(message(2))
    assert time.monotonic() - started >= 0.3
    assert inbound.dropped == 1


def test_a_bounded_wait_takes_the_room_a_worker_makes() -> None:
    inbound = InboundQueue(1, wait_s=5.0, log=LOG)
    inbound.put(message(1))
    worker = threading.Timer(0.2, lambda: inbound.get(0))
    worker.start()
    assert inbound.put(message(2))  # backpressure: waited, then queued
    worker.join()
    assert inbound.dropped == 0
    assert inbound.get(0) == message(2)


def test_waiting_until_closed_drops_nothing_counted() -> None:
    inbound = InboundQueue(1, wait_s=None, log=LOG)
    inbound.put(message(1))
    result: list[bool] = []
    network = threading.Thread(target=lambda: result.append(inbound.put(message(2))))
    network.start()
    time.sleep(0.3)
    assert network.is_alive()  # still waiting for room
    inbound.close()
    network.join(timeout=5)
    assert result == [False]
    assert inbound.dropped == 0  # left unacknowledged at close, not a drop


def test_close_wakes_a_waiting_worker_after_the_queue_is_drained() -> None:
    inbound = InboundQueue(4, wait_s=0, log=LOG)
    inbound.put(message(1))
    assert inbound.get(None) == message(1)
    got: list[Inbound | None] = []
    worker = threading.Thread(target=lambda: got.append(inbound.get(None)))
    worker.start()
    time.sleep(0.1)
    inbound.close()
    worker.join(timeout=5)
    assert got == [None]
    assert inbound.closed
    assert not inbound.put(message(2))  # nothing is taken once closed


def test_what_was_queued_before_close_is_still_handed_out() -> None:
    inbound = InboundQueue(1, wait_s=0, log=LOG)
    inbound.put(message(1))
    inbound.close()  # full: no room for the wake-up, the worker finds it closed
    assert inbound.get(None) == message(1)
    assert inbound.get(None) is None
    assert inbound.get(10) is None  # closed and empty: no wait
