"""The release intake sleeps while none of its chores has work, so an idle doorbell
wakes a few times a minute rather than every second, and it is woken at once for work
that is not a message: a new epoch's escrow blob, a finished job
(docs/architecture.md, "Release threads"). Over a real mosquitto."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from device.release.service import ReleaseService, ServiceTiming
from device.release.vaultview import StoreVault
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, Inbox, subscribe
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.release import DeviceRig
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.broker

IDLE_S = 5.0
TIMING = ServiceTiming(poll_s=0.05, idle_s=IDLE_S, retry_initial_s=0.2, retry_max_s=1.0)


class Passes:
    """Counts the intake thread's passes (each runs the chores once)."""

    def __init__(self, service: ReleaseService) -> None:
        self.count = 0
        chores = service.chores

        def counted() -> bool:
            self.count += 1
            return chores()

        service.chores = counted  # type: ignore[method-assign]


def _quiet(service: ReleaseService) -> bool:
    return (service.link.connected() and service.jobs.quiet()
            and service.escrow is not None and not service.escrow.waiting)


def test_an_idle_intake_sleeps_and_a_new_escrow_blob_wakes_it(
    mqtt_rig: DeviceRig, broker: Broker, deployment: TestDeployment
) -> None:
    rig = mqtt_rig
    topics = DeviceTopics(rig.device_id, deployment.prefix)
    cloud = broker.client("cloud")
    escrows = Inbox(cloud)
    subscribe(cloud, topics.escrow)
    service = ReleaseService(rig.config, StoreVault(rig.store), rig.clock,
                             escrow_outbox=rig.store.escrow_outbox, timing=TIMING)
    passes = Passes(service)
    service.start()
    try:
        wait_until("the intake to find nothing to do", lambda: _quiet(service), timeout=30)
        time.sleep(0.2)  # the pass that found it quiet ends and the intake sleeps
        before = passes.count
        time.sleep(1.5)
        assert passes.count - before <= 1  # at poll_s (0.05 s) it would have made ~30
        recorded = time.monotonic()
        rig.record(rig.clock.now() - timedelta(minutes=5), 2)  # a new epoch: a new blob
        message = escrows.get(timeout=2.0)  # woken: its next pass is over 3 s away
        assert time.monotonic() - recorded < 2.0
        assert message.topic == topics.escrow
        assert service.escrow is not None
        assert service.escrow.waiting  # nobody acknowledges here: it keeps looking
        busy_from = passes.count
        time.sleep(0.5)
        assert passes.count - busy_from >= 3  # ~10 at poll_s
    finally:
        service.stop()
        cloud.disconnect()
