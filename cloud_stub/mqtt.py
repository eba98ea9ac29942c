"""The cloud's MQTT link (paho-mqtt 2.x, VERSION2 callbacks, MQTT v5 persistent session).

Outbound: release tokens to ``{prefix}/{device}/release`` (QoS 1; `publish_release`
returns once the broker acknowledged, else raises `TransportError` and the token stays
``issued`` for the next connect or redelivery pass), and ``{"epoch": id}`` to
``{prefix}/{device}/escrow-ack`` once an escrowed key is stored.

Redelivery: a background thread publishes, while connected, the tokens still
``issued``, and publishes again ``published`` tokens that no device result answered
(`Releaser.redeliver`, backoff from ``[redelivery]`` in ``deployment.toml``, ADR 0011).

Inbound: ``escrow``, ``result``, ``status`` and ``notice`` of every device. Messages are
acknowledged manually, only after they were handled: the network thread puts them on a
bounded queue, one worker takes them in small batches, parses each strictly
(`protocol.messages`) and records it; the escrows of a batch share one transaction and
are acknowledged after its commit (docs/architecture.md, "Escrows in batches"). A hostile
or malformed payload is logged and dropped alone (acknowledged, so it is not redelivered
forever), a store failure leaves it unacknowledged so the broker redelivers it.
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_stub.errors import CloudError, EnvironmentFault, HostileInputError, TransportError
from cloud_stub.provision.deployment import enrolled_device_ids
from cloud_stub.provision.errors import DeploymentError
from cloud_stub.provision.trust_roots import chain_fingerprint, published_chain
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.services.device_events import Notice, Result
from cloud_stub.services.escrow import EpochEscrow
from protocol.connect_errors import describe_connection_error
from protocol.errors import MessageError
from protocol.keys import private_session_id
from protocol.messages import EscrowAck, parse_escrow, parse_notice, parse_result, parse_status
from protocol.root_chain import encode_chain
from protocol.tls import client_context
from protocol.topics import DeviceTopics, all_devices

log = logging.getLogger(__name__)

INBOUND_LEAVES = ("escrow", "result", "status", "notice")
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our subscriptions and queued QoS 1
PUBLISH_TIMEOUT_S = 10.0
QUEUE_SIZE = 1000
BATCH_SIZE = 64  # inbound messages the worker takes at once (escrows share a transaction)
BATCH_WAIT_S = 0.005  # how long the worker waits for more after the first of a batch
PENDING_POLL_S = 1.0  # seconds between looks for tokens issued by another process
MAX_REDELIVERY_TICK_S = 30.0  # how often, at most, the redelivery pass looks at tokens


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str
    port: int
    prefix: str
    client_id: str
    ca_cert: Path
    cert: Path
    key: Path
    keepalive_s: int = 30
    max_payload: int = 256 * 1024

    @classmethod
    def from_service(cls, service: CloudService, *, host: str | None = None,
                     port: int | None = None) -> MqttOptions:
        settings = service.core.settings
        layout = service.core.layout
        try:
            key_file = layout.cloud_mqtt_key.read_bytes()
        except OSError as exc:
            raise EnvironmentFault(
                f"cannot read the cloud's MQTT key {layout.cloud_mqtt_key}: {exc.strerror}"
            ) from exc
        return cls(
            host=host or settings.broker.host,
            port=port or settings.broker.port,
            prefix=settings.prefix,
            client_id=private_session_id(settings.cloud_id, key_file),
            ca_cert=layout.ca_cert,
            cert=layout.cloud_mqtt_cert,
            key=layout.cloud_mqtt_key,
            max_payload=service.core.limits.max_mqtt_payload,
        )


@dataclass(frozen=True, slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int


class CloudMqtt:
    """The cloud's connection to the broker; also the service's `ReleasePublisher`."""

    def __init__(self, service: CloudService, options: MqttOptions) -> None:
        self.service = service
        self.options = options
        self._queue: queue.Queue[_Inbound | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._redeliverer: threading.Thread | None = None
        self._published_roots = b""  # chain_fingerprint of the last published chain
        self._last_problem = ""
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self._client.tls_set_context(client_context(options.ca_cert, options.cert, options.key))
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, wait_s: float = 10.0) -> bool:
        """Connect (asynchronously, retried forever) and start the worker; True when
        connected within ``wait_s``."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._worker = threading.Thread(target=self._work, name="cloud-mqtt-worker", daemon=True)
        self._worker.start()
        self._redeliverer = threading.Thread(target=self._redeliver_loop,
                                             name="cloud-mqtt-redeliver", daemon=True)
        self._redeliverer.start()
        self.service.set_publisher(self)
        self._client.connect_async(
            self.options.host, self.options.port, keepalive=self.options.keepalive_s,
            clean_start=False, properties=props,
        )
        self._client.loop_start()
        return self._connected.wait(wait_s)

    def stop(self) -> None:
        self._stopping.set()
        self.service.set_publisher(None)
        self._client.disconnect()
        self._client.loop_stop()
        self._queue.put(None)
        for thread in (self._worker, self._redeliverer):
            if thread is not None:
                thread.join(timeout=10)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- callbacks (network thread) -----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                    reason: ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):  # no Nagle: "Small packets", docs/architecture.md
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe([(all_devices(self.options.prefix, leaf), 1) for leaf in INBOUND_LEAVES])
        self._last_problem = ""
        self._connected.set()
        log.info("connected to the broker at %s:%s", self.options.host, self.options.port)
        threading.Thread(target=self._republish, name="cloud-mqtt-republish", daemon=True).start()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho calls this inside its `except OSError` around the attempt: the cause is
        # the active exception. Each distinct cause is logged once, not at every retry.
        exc = sys.exc_info()[1]
        cause = describe_connection_error(exc) if exc is not None else "the connection failed"
        problem = (f"cannot reach the MQTT broker at {self.options.host}:{self.options.port}: "
                   f"{cause}")
        if problem != self._last_problem:
            log.error("%s; retrying with backoff", problem)
        self._last_problem = problem

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason: ReasonCode, _props: Properties | None) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from the broker: %s; reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = _Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.error("inbound queue full: %s left unacknowledged for redelivery", msg.topic)

    # --- outbound -----------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self._await_publish(topic, self._start_publish(topic, payload, retain=retain))

    def _start_publish(self, topic: str, payload: bytes, *,
                       retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Hand a QoS 1 message to the network thread; `_await_publish` waits for the
        broker's acknowledgement, so several can be on the wire at once."""
        if not self._connected.is_set():
            raise TransportError("not connected to the broker")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"publish to {topic} refused: {mqtt.error_string(info.rc)}")
        return info

    @staticmethod
    def _await_publish(topic: str, info: mqtt.MQTTMessageInfo) -> None:
        try:
            info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise TransportError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise TransportError(f"the broker did not acknowledge {topic} in time")

    def publish_release(self, device_id: str, payload: bytes) -> None:
        topic = DeviceTopics(device_id, self.options.prefix).release
        self._publish(topic, payload)
        log.info("published a release token for %s on %s", device_id, topic)

    def _republish(self) -> None:
        self._published_roots = b""  # a new session: publish the trust roots again
        self.publish_trust_roots()
        try:
            self.service.releaser.publish(self.service.releaser.pending())
        except CloudError as exc:
            log.warning("republishing issued tokens failed: %s", exc)

    def publish_trust_roots(self) -> None:
        """Publish the chain of trust roots, retained, to every enrolled device whenever it
        changed (`cloud-stub root sign`) or the link reconnected (ADR 0013)."""
        layout = self.service.core.layout
        try:
            mark = chain_fingerprint(layout)
            if mark == self._published_roots:
                return
            chain = published_chain(layout)
            if not chain:
                self._published_roots = mark
                return
            payload = encode_chain(chain)
            for device_id in enrolled_device_ids(layout):
                self._publish(DeviceTopics(device_id, self.options.prefix).trust_root, payload,
                              retain=True)
        except (CloudError, OSError, DeploymentError) as exc:
            log.warning("trust roots not published yet: %s", exc)
            return
        self._published_roots = mark
        log.info("trust root chain (%d roots) published to the devices", len(chain))

    def redelivery_tick_s(self) -> float:
        """Seconds between redelivery passes: half the first delay, within [0.5, 30]."""
        initial = self.service.releaser.redelivery.initial_s
        return max(0.5, min(initial / 2, MAX_REDELIVERY_TICK_S))

    def _redeliver_loop(self) -> None:
        """Every PENDING_POLL_S, publish the tokens issued but not yet published (an
        approval through the operator's CLI, which has no broker link, reaches the device
        within that); every redelivery tick, also publish again what no result answered."""
        releaser = self.service.releaser
        next_redelivery = time.monotonic() + self.redelivery_tick_s()
        while not self._stopping.wait(min(PENDING_POLL_S, self.redelivery_tick_s())):
            if not self._connected.is_set():
                continue
            self.publish_trust_roots()
            try:
                releaser.publish(releaser.pending())  # issued tokens the broker did not take
                if time.monotonic() < next_redelivery:
                    continue
                next_redelivery = time.monotonic() + self.redelivery_tick_s()
                releaser.redeliver(self.service.core.now())
            except CloudError as exc:
                log.warning("redelivery pass failed: %s", exc)
            except Exception:  # the pass runs again; nothing may end this thread
                log.exception("unexpected error in the redelivery pass")

    # --- inbound (worker thread) --------------------------------------------------------

    def _split(self, topic: str) -> tuple[str, str]:
        prefix = self.options.prefix + "/"
        if not topic.startswith(prefix):
            raise HostileInputError(f"topic {topic[:80]!r} is outside the prefix")
        parts = topic[len(prefix):].split("/")
        if len(parts) != 2 or parts[1] not in INBOUND_LEAVES:
            raise HostileInputError(f"unexpected topic {topic[:80]!r}")
        DeviceTopics(parts[0], self.options.prefix)
        return parts[0], parts[1]

    def _escrow(self, topic: str, payload: bytes) -> tuple[str, EpochEscrow]:
        """The device of the topic and the escrow, strictly parsed. Raises
        `HostileInputError` for a bad payload or topic."""
        if len(payload) > self.options.max_payload:
            raise HostileInputError(f"payload of {len(payload)} bytes over the cap")
        device_id, leaf = self._split(topic)
        if leaf != "escrow":
            raise HostileInputError(f"{leaf} from {device_id} is not an escrow")
        try:
            msg = parse_escrow(payload)
            return device_id, EpochEscrow(
                device_id=msg.device, epoch_id=msg.epoch, start=msg.start, end=msg.end,
                recipient=msg.recipient, sealed_b64=msg.sealed,
            )
        except (MessageError, ValueError) as exc:
            raise HostileInputError(f"escrow from {device_id}: {exc}") from exc

    def handle(self, topic: str, payload: bytes) -> None:
        """Parse and record one inbound message. Raises `HostileInputError` for a bad
        payload or topic and `EnvironmentFault` when the store fails."""
        if len(payload) > self.options.max_payload:
            raise HostileInputError(f"payload of {len(payload)} bytes over the cap")
        device_id, leaf = self._split(topic)
        events = self.service.events
        try:
            if leaf == "escrow":
                _, item = self._escrow(topic, payload)
                events.escrow_received(device_id, item)
                ack = DeviceTopics(device_id, self.options.prefix).escrow_ack
                self._publish(ack, EscrowAck(epoch=item.epoch_id).to_bytes())
            elif leaf == "result":
                res = parse_result(payload)
                events.result_received(device_id, Result(
                    jti=res.jti, status=str(res.status), reason=res.reason, detail=res.detail,
                    clips=res.clips, token_sha256=res.token_sha256,
                ))
            elif leaf == "status":
                status = parse_status(payload)
                events.status_received(device_id, str(status.state))
                # the size the next log proof for this device starts from (ADR 0014)
                self.service.releaser.release_log.note_size(
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

    def _work(self) -> None:
        """Take what is queued in batches (`_next_batch`); a run of escrows in a batch is
        stored in one transaction (`_handle_escrows`), anything else one by one, in order."""
        while True:
            batch, stopping = self._next_batch()
            run: list[_Inbound] = []
            for item in batch:
                if self._is_escrow(item.topic):
                    run.append(item)
                    continue
                self._handle_escrows(run)
                run = []
                self._handle_one(item)
            self._handle_escrows(run)
            if stopping:
                return

    def _next_batch(self) -> tuple[list[_Inbound], bool]:
        """The next message, and what else arrives within BATCH_WAIT_S of it, up to
        BATCH_SIZE; True when the link is stopping after these."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + BATCH_WAIT_S
        while len(batch) < BATCH_SIZE:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _is_escrow(self, topic: str) -> bool:
        return topic.startswith(self.options.prefix + "/") and topic.endswith("/escrow")

    def _ack(self, item: _Inbound) -> None:
        if item.qos > 0:
            self._client.ack(item.mid, item.qos)

    def _handle_one(self, item: _Inbound) -> None:
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

    def _handle_escrows(self, items: list[_Inbound]) -> None:
        """Store a run of escrows in one transaction, then publish each escrow-ack: the
        device drops its copy on the ack, so no ack goes out before the commit
        (docs/architecture.md, "Escrows in batches"). A bad escrow is dropped alone, as
        `_handle_one` drops it; a store failure leaves the whole run unacknowledged for
        redelivery, and a failed ack publish leaves its own message so."""
        parsed: list[tuple[_Inbound, str, EpochEscrow]] = []
        for item in items:
            try:
                device_id, escrow = self._escrow(item.topic, item.payload)
            except HostileInputError as exc:
                log.warning("dropped message on %s: %s", item.topic[:120], exc)
                self._ack(item)
                continue
            parsed.append((item, device_id, escrow))
        if not parsed:
            return
        verdicts: list[CloudError | None]
        try:
            verdicts = list(self.service.events.escrows_received(
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
        sent: list[tuple[_Inbound, str, mqtt.MQTTMessageInfo]] = []
        for (item, device_id, escrow), refused in zip(parsed, verdicts, strict=True):
            if refused is not None:
                log.warning("dropped message on %s: %s", item.topic[:120], refused)
                self._ack(item)
                continue
            topic = DeviceTopics(device_id, self.options.prefix).escrow_ack
            try:
                info = self._start_publish(topic, EscrowAck(epoch=escrow.epoch_id).to_bytes())
            except TransportError as exc:
                log.error("message on %s not handled (will be redelivered): %s",
                          item.topic[:120], exc)
                continue
            sent.append((item, topic, info))
        for item, topic, info in sent:
            try:
                self._await_publish(topic, info)
            except TransportError as exc:
                log.error("message on %s not handled (will be redelivered): %s",
                          item.topic[:120], exc)
                continue
            self._ack(item)
