"""The cloud's inbound MQTT messages: parsed strictly, recorded, then acknowledged.

`InboundWorker` runs on one thread of the cloud's link (`cloud_stub.mqtt`). It takes
what the network thread queued in small batches, parses each message strictly
(`protocol.messages`) and records it; the escrows of a batch share one transaction and
are acknowledged after its commit (docs/architecture.md, "Escrows in batches"), and so
do its token results ("Results in batches"). A
hostile or malformed payload is logged and dropped alone (acknowledged, so it is not
redelivered forever), a store failure leaves it unacknowledged so the broker redelivers
it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.errors import CloudError, EnvironmentFault, HostileInputError, TransportError
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.services.device_events import Notice, Result
from cloud_stub.services.escrow import EpochEscrow
from mqtt_session import Delivery, Inbound, InboundQueue, Session
from protocol.errors import MessageError
from protocol.messages import EscrowAck, parse_escrow, parse_notice, parse_result, parse_status
from protocol.topics import DeviceTopics

_T = TypeVar("_T")

log = logging.getLogger("cloud_stub.mqtt")  # one logger for the whole link

INBOUND_LEAVES = ("escrow", "result", "status", "notice")
PUBLISH_TIMEOUT_S = 10.0
BATCH_SIZE = 64  # inbound messages the worker takes at once (escrows, results share one)
BATCH_WAIT_S = 0.005  # how long the worker waits for more after the first of a batch


class InboundWorker:
    """Handles what `queue` holds until it is closed; acknowledges through `session`."""

    def __init__(self, service: CloudService, session: Session, queue: InboundQueue, *,
                 prefix: str, max_payload: int) -> None:
        self._service = service
        self._session = session
        self._queue = queue
        self._prefix = prefix
        self._max_payload = max_payload

    def _split(self, topic: str) -> tuple[str, str]:
        prefix = self._prefix + "/"
        if not topic.startswith(prefix):
            raise HostileInputError(f"topic {topic[:80]!r} is outside the prefix")
        parts = topic[len(prefix):].split("/")
        if len(parts) != 2 or parts[1] not in INBOUND_LEAVES:
            raise HostileInputError(f"unexpected topic {topic[:80]!r}")
        DeviceTopics(parts[0], self._prefix)
        return parts[0], parts[1]

    def _from_device(self, topic: str, payload: bytes, expected: str) -> str:
        """The device of the topic, once the payload is within the cap and the topic's
        leaf is `expected`. Raises `HostileInputError` otherwise."""
        if len(payload) > self._max_payload:
            raise HostileInputError(f"payload of {len(payload)} bytes over the cap")
        device_id, leaf = self._split(topic)
        if leaf != expected:
            raise HostileInputError(f"{leaf} from {device_id} where {expected} was expected")
        return device_id

    def _escrow(self, topic: str, payload: bytes) -> tuple[str, EpochEscrow]:
        """The device of the topic and the escrow, strictly parsed. Raises
        `HostileInputError` for a bad payload or topic."""
        device_id = self._from_device(topic, payload, "escrow")
        try:
            msg = parse_escrow(payload)
            return device_id, EpochEscrow(
                device_id=msg.device, epoch_id=msg.epoch, start=msg.start, end=msg.end,
                recipient=msg.recipient, sealed_b64=msg.sealed,
            )
        except (MessageError, ValueError) as exc:
            raise HostileInputError(f"escrow from {device_id}: {exc}") from exc

    def _result(self, topic: str, payload: bytes) -> tuple[str, Result]:
        """The device of the topic and the token result, strictly parsed. Raises
        `HostileInputError` for a bad payload or topic."""
        device_id = self._from_device(topic, payload, "result")
        try:
            res = parse_result(payload)
            return device_id, Result(
                jti=res.jti, status=TokenStatus(res.status.value), reason=res.reason,
                detail=res.detail, clips=res.clips, token_sha256=res.token_sha256,
            )
        except (MessageError, ValueError) as exc:
            raise HostileInputError(f"result from {device_id}: {exc}") from exc

    def handle(self, topic: str, payload: bytes) -> None:
        """Parse and record one inbound message. Raises `HostileInputError` for a bad
        payload or topic and `EnvironmentFault` when the store fails."""
        if len(payload) > self._max_payload:
            raise HostileInputError(f"payload of {len(payload)} bytes over the cap")
        device_id, leaf = self._split(topic)
        events = self._service.events
        try:
            if leaf == "escrow":
                _, item = self._escrow(topic, payload)
                events.escrow_received(device_id, item)
                ack = DeviceTopics(device_id, self._prefix).escrow_ack
                self._session.publish_and_wait(ack, EscrowAck(epoch=item.epoch_id).to_bytes(),
                                               timeout=PUBLISH_TIMEOUT_S)
            elif leaf == "result":
                _, result = self._result(topic, payload)
                events.result_received(device_id, result)
            elif leaf == "status":
                status = parse_status(payload)
                events.status_received(device_id, str(status.state))
                # the size the next log proof for this device starts from (ADR 0014)
                self._service.releaser.release_log.note_size(
                    device_id, status.health.get("release_log_size"))
            else:
                notice = parse_notice(payload)
                events.notice_received(device_id, Notice(
                    jti=notice.jti, released_at=notice.released_at.isoformat(),
                ))
        except MessageError as exc:
            raise HostileInputError(f"{leaf} from {device_id}: {exc}") from exc
        except ValueError as exc:
            raise HostileInputError(f"{leaf} from {device_id}: {exc}") from exc

    def run(self) -> None:
        """Take what is queued in batches (`_next_batch`); a run of escrows in a batch is
        stored in one transaction (`_handle_escrows`), so is a run of results
        (`_handle_results`), anything else one by one, in order."""
        while True:
            batch, stopping = self._next_batch()
            run: list[Inbound] = []
            kind = ""
            for item in batch:
                leaf = self._batched_leaf(item.topic)
                if run and leaf != kind:
                    self._handle_run(kind, run)
                    run = []
                if leaf:
                    kind = leaf
                    run.append(item)
                else:
                    self._handle_one(item)
            if run:
                self._handle_run(kind, run)
            if stopping:
                return

    def _handle_run(self, kind: str, run: list[Inbound]) -> None:
        if kind == "escrow":
            self._handle_escrows(run)
        else:
            self._handle_results(run)

    def _next_batch(self) -> tuple[list[Inbound], bool]:
        """The next message, and what else arrives within BATCH_WAIT_S of it, up to
        BATCH_SIZE; True when the link is stopping after these."""
        first = self._queue.get(None)
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(batch) < BATCH_SIZE:
            item = self._queue.get(max(0.0, deadline - time.monotonic()))
            if item is None:
                if self._queue.closed:
                    return batch, True
                break
            batch.append(item)
        return batch, False

    def _batched_leaf(self, topic: str) -> str:
        """``escrow`` or ``result`` for a message recorded in batches, else ""."""
        if topic.startswith(self._prefix + "/"):
            for leaf in ("escrow", "result"):
                if topic.endswith("/" + leaf):
                    return leaf
        return ""

    def _ack(self, item: Inbound) -> None:
        self._session.ack(item)

    def _handle_one(self, item: Inbound) -> None:
        try:
            self.handle(item.topic, item.payload)
        except HostileInputError as exc:
            log.warning("dropped message on %s: %s", item.topic[:120], exc)
        except (EnvironmentFault, TransportError) as exc:
            log.error("message on %s not handled (will be redelivered): %s",
                      item.topic[:120], exc)
            return
        except CloudError as exc:
            log.warning("dropped message on %s: %s", item.topic[:120], exc)
        except Exception:
            log.exception("unexpected error handling %s; dropped", item.topic[:120])
        self._ack(item)

    def _parse_run(self, items: list[Inbound], parse: Callable[[str, bytes], tuple[str, _T]]
                   ) -> list[tuple[Inbound, str, _T]]:
        """Each of `items` with its device and its message as `parse` reads them; one that
        does not parse is dropped alone (logged and acknowledged, as `_handle_one` does)."""
        parsed: list[tuple[Inbound, str, _T]] = []
        for item in items:
            try:
                device_id, message = parse(item.topic, item.payload)
            except HostileInputError as exc:
                log.warning("dropped message on %s: %s", item.topic[:120], exc)
                self._ack(item)
                continue
            parsed.append((item, device_id, message))
        return parsed

    def _handle_escrows(self, items: list[Inbound]) -> None:
        """Store a run of escrows in one transaction, then publish each escrow-ack: the
        device drops its copy on the ack, so no ack goes out before the commit
        (docs/architecture.md, "Escrows in batches"). A bad escrow is dropped alone, as
        `_handle_one` drops it; a store failure leaves the whole run unacknowledged for
        redelivery, and a failed ack publish leaves its own message so."""
        parsed = self._parse_run(items, self._escrow)
        if not parsed:
            return
        verdicts: list[CloudError | None]
        try:
            verdicts = list(self._service.events.escrows_received(
                [(device_id, escrow) for _, device_id, escrow in parsed]))
        except EnvironmentFault as exc:
            log.error("%d escrows not stored (will be redelivered): %s", len(parsed), exc)
            return
        except CloudError as exc:
            log.warning("dropped %d escrows: %s", len(parsed), exc)
            verdicts = [exc] * len(parsed)
        except Exception:
            log.exception("unexpected error storing %d escrows; dropped", len(parsed))
            for item, _, _ in parsed:
                self._ack(item)
            return
        sent: list[tuple[Inbound, Delivery]] = []
        for (item, device_id, escrow), refused in zip(parsed, verdicts, strict=True):
            if refused is not None:
                log.warning("dropped message on %s: %s", item.topic[:120], refused)
                self._ack(item)
                continue
            topic = DeviceTopics(device_id, self._prefix).escrow_ack
            try:
                delivery = self._session.publish(topic, EscrowAck(epoch=escrow.epoch_id).to_bytes())
            except TransportError as exc:
                log.error("message on %s not handled (will be redelivered): %s",
                          item.topic[:120], exc)
                continue
            sent.append((item, delivery))
        for item, delivery in sent:  # several on the wire at once, then their PUBACKs
            try:
                delivery.wait(PUBLISH_TIMEOUT_S)
            except TransportError as exc:
                log.error("message on %s not handled (will be redelivered): %s",
                          item.topic[:120], exc)
                continue
            self._ack(item)

    def _handle_results(self, items: list[Inbound]) -> None:
        """Record a run of token results in one transaction, then acknowledge each to the
        broker (docs/architecture.md, "Results in batches"). A bad result is dropped
        alone, as `_handle_one` drops it; when the batch fails (the store failed, or
        picked it as a deadlock's victim), nothing of it was recorded and each result is
        handled on its own, as without batches."""
        parsed = self._parse_run(items, self._result)
        if not parsed:
            return
        try:
            verdicts = self._service.events.results_received(
                [(device_id, result) for _, device_id, result in parsed])
        except Exception as exc:  # each alone then, as without batches
            log.warning("%d results not recorded together (%s); one at a time",
                        len(parsed), exc)
            for item, _, _ in parsed:
                self._handle_one(item)
            return
        for (item, _, _), verdict in zip(parsed, verdicts, strict=True):
            if isinstance(verdict, HostileInputError):
                log.warning("dropped message on %s: %s", item.topic[:120], verdict)
            self._ack(item)
