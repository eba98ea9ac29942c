"""Token results recorded in batches (docs/architecture.md, "Results in batches").

The cloud's MQTT worker records the results queued together in one transaction, each as
a lone result would be recorded: a refused result (a token not issued to its device, an
unknown status) is refused alone and never fails its neighbours, a repeat is a no-op, and
the audit chain stays one chain. When the batch fails as a whole, each result is handled
on its own, as without batches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import select

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.errors import HostileInputError, StoreError
from cloud_stub.mqtt_inbound import InboundWorker
from cloud_stub.services.device_events import Result
from cloud_stub.store.models import AuditRow, Token
from mqtt_session import Inbound, InboundQueue
from protocol.messages import ResultMessage, ResultStatus
from protocol.topics import DeviceTopics
from tests.fixtures.cloud import CloudServer, DeviceSigner, open_cloud
from tests.fixtures.deployment import TestDeployment
from tests.integration.test_cloud_mqtt import approve_warrant


def released(cloud: CloudServer, n: int) -> list[tuple[DeviceSigner, str]]:
    """`n` devices, each with an escrowed epoch and an approved token: (device, jti)."""
    agency = cloud.principal("agency", org="metro-pd")
    reviewer = cloud.principal("reviewer", org="legal")
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        device = cloud.enroll()
        cloud.escrow_epoch(device.device_id, now - timedelta(hours=20),
                           now - timedelta(hours=19))
        request_id = approve_warrant(cloud, agency, reviewer, device)
        with cloud.service.store.read() as session:
            jti = session.execute(select(Token.jti).where(Token.request_id == request_id)
                                  ).scalar_one()
        out.append((device, jti))
    return out


def uploaded(jti: str, status: str = "uploaded") -> Result:
    # a str on purpose: a hostile status the type would not allow must be refused too
    return Result(jti=jti, status=cast(TokenStatus, status), reason="", detail="", clips=())


def statuses(cloud: CloudServer, jtis: list[str]) -> list[str]:
    with cloud.service.store.read() as session:
        return [str(session.get(Token, jti).status) for jti in jtis]  # type: ignore[union-attr]


def audited(cloud: CloudServer, action: str) -> list[str]:
    with cloud.service.store.read() as session:
        return list(session.execute(select(AuditRow.subject).where(AuditRow.action == action)
                                    .order_by(AuditRow.seq)).scalars())


def test_a_batch_records_each_result_and_refuses_the_bad_ones_alone(cloud: CloudServer
                                                                     ) -> None:
    (first, a), (second, b) = released(cloud, 2)
    verdicts = cloud.service.events.results_received([
        (first.device_id, uploaded(a)),
        (first.device_id, uploaded(b)),  # a token issued to another device
        (second.device_id, uploaded(b, status="lost")),  # no such status
        (second.device_id, uploaded(b)),
        (first.device_id, uploaded(a)),  # the outbox sent it again: a no-op
    ])
    assert verdicts[0] is True
    assert isinstance(verdicts[1], HostileInputError)
    assert verdicts[1].code == "unknown_token"
    assert isinstance(verdicts[2], HostileInputError)
    assert verdicts[3] is True
    assert verdicts[4] is False
    assert statuses(cloud, [a, b]) == ["uploaded", "uploaded"]
    assert audited(cloud, "token.uploaded") == [f"token:{a}", f"token:{b}"]
    assert cloud.service.core.audit.verify().entries > 2


def test_a_store_failure_records_nothing_of_the_batch(cloud: CloudServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (first, a), (second, b) = released(cloud, 2)
    before = statuses(cloud, [a, b])
    audit = cloud.service.core.audit
    real = audit._append_queued

    def failing(session: object) -> None:
        real(session)  # type: ignore[arg-type]
        raise StoreError("store operation failed: disk I/O error (injected)")

    monkeypatch.setattr(audit, "_append_queued", failing)
    with pytest.raises(StoreError):
        cloud.service.events.results_received([(first.device_id, uploaded(a)),
                                               (second.device_id, uploaded(b))])
    monkeypatch.undo()
    assert statuses(cloud, [a, b]) == before
    assert audited(cloud, "token.uploaded") == []
    audit.verify()


@dataclass
class AckLog:
    """The worker's session as far as results need it: what it acknowledged."""

    acked: list[str] = field(default_factory=list)

    def ack(self, item: Inbound) -> None:
        self.acked.append(item.topic)


def test_when_the_batch_fails_each_result_is_handled_alone(
    cloud: CloudServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, a), (second, b) = released(cloud, 2)
    prefix = cloud.deployment.prefix
    session = AckLog()
    queue = InboundQueue(8, wait_s=0, log=logging.getLogger(__name__))
    worker = InboundWorker(cloud.service, session, queue,  # type: ignore[arg-type]
                           prefix=prefix, max_payload=64 * 1024)

    def message(device: DeviceSigner, jti: str) -> Inbound:
        payload = ResultMessage(jti=jti, status=ResultStatus.uploaded).to_bytes()
        return Inbound(DeviceTopics(device.device_id, prefix).result, payload, qos=1)

    real = cloud.service.events.results_received

    def refuse(batch: list[tuple[str, Result]]) -> object:
        if len(batch) > 1:  # the batch fails; each result alone goes through
            raise StoreError("store operation failed: deadlock detected (injected)")
        return real(batch)

    monkeypatch.setattr(cloud.service.events, "results_received", refuse)
    items = [message(first, a), Inbound(DeviceTopics(first.device_id, prefix).result,
                                        b"{not json", qos=1), message(second, b)]
    worker._handle_results(items)
    assert statuses(cloud, [a, b]) == ["uploaded", "uploaded"]
    assert sorted(session.acked) == sorted(i.topic for i in items)
    cloud.service.core.audit.verify()


class Broker:
    """Takes every token at once (the publisher's side of the link)."""

    def publish_release(self, device_id: str, payload: bytes) -> None:
        pass


@pytest.fixture
def cloud_on_each_store(deployment: TestDeployment, tmp_path: Path, store_url: str
                        ) -> Iterator[CloudServer]:
    """The cloud stub on a SQLite store, then on a PostgreSQL one."""
    yield from open_cloud(deployment, tmp_path, store_url)


def test_a_batch_of_results_and_a_publish_of_the_same_tokens_both_go_through(
    cloud_on_each_store: CloudServer,
) -> None:
    """A batch of results and the publisher's marking take the same tokens' rows; both
    lock them in jti order, so neither fails as a deadlock's victim, whichever comes
    first, and the chain stays one chain."""
    cloud = cloud_on_each_store
    pairs = released(cloud, 6)
    core = cloud.service.core
    core.set_publisher(Broker())
    jtis = [jti for _, jti in pairs]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def publish() -> None:
        try:
            start.wait(30)
            cloud.service.releaser.publish(jtis)
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    def answer() -> None:
        try:
            start.wait(30)
            verdicts = cloud.service.events.results_received(
                [(device.device_id, uploaded(jti)) for device, jti in reversed(pairs)])
            assert verdicts == [True] * len(pairs)
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=publish), threading.Thread(target=answer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    core.set_publisher(None)
    assert failures == []
    assert statuses(cloud, jtis) == ["uploaded"] * len(jtis)
    cloud.service.core.audit.verify()
