"""The cloud's MQTT link (paho-mqtt 2.x, VERSION2 callbacks, MQTT v5 persistent session).

Outbound: release tokens to ``{prefix}/{device}/release`` (QoS 1; `publish_release`
returns once the broker acknowledged, else raises `TransportError` and the token stays
``issued`` for the next connect or redelivery pass), and ``{"epoch": id}`` to
``{prefix}/{device}/escrow-ack`` once an escrowed key is stored.

Redelivery: a background thread publishes, while connected, the tokens still
``issued``, and publishes again ``published`` tokens that no device result answered
(`Publisher.redeliver` in services/publishing.py, backoff from ``[redelivery]`` in
``deployment.toml``, ADR 0011).

Inbound: ``escrow``, ``result``, ``status`` and ``notice`` of every device. Messages are
acknowledged manually, only after they were handled: the network thread puts them on a
bounded queue (full: dropped unacknowledged, for the broker to deliver again), and one
worker (`cloud_stub.mqtt_inbound`) parses, records and acknowledges them. The session
itself is `mqtt_session.Session`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloud_stub.errors import CloudError, EnvironmentFault, TransportError
from cloud_stub.mqtt_inbound import INBOUND_LEAVES, PUBLISH_TIMEOUT_S, InboundWorker
from cloud_stub.provision.deployment import enrolled_device_ids
from cloud_stub.provision.errors import DeploymentError
from cloud_stub.provision.trust_roots import chain_fingerprint, published_chain
from cloud_stub.services.cloud_service import CloudService
from mqtt_session import (
    InboundQueue,
    ProblemLog,
    Session,
    SessionSettings,
)
from protocol.keys import private_session_id
from protocol.root_chain import encode_chain
from protocol.tls import client_context
from protocol.topics import DeviceTopics, all_devices

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our subscriptions and queued QoS 1
QUEUE_SIZE = 1000
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


class _Watcher(ProblemLog):
    """Logs each new cause of a lost connection once; on every connection, publishes
    on a thread of its own what the devices may have missed (`republish`)."""

    def __init__(self, address: str, republish: Callable[[], None]) -> None:
        super().__init__(log, address, level=logging.ERROR, link="the cloud's MQTT link")
        self._republish = republish

    def up(self, session_present: bool) -> None:
        super().up(session_present)
        log.info("connected to the broker at %s", self._address)
        threading.Thread(target=self._republish, name="cloud-mqtt-republish",
                         daemon=True).start()


class CloudMqtt:
    """The cloud's connection to the broker; also the service's `ReleasePublisher`."""

    def __init__(self, service: CloudService, options: MqttOptions) -> None:
        self.service = service
        self.options = options
        # A full queue drops at once, unacknowledged: the broker delivers it again.
        self._queue = InboundQueue(QUEUE_SIZE, wait_s=0, log=log)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._redeliverer: threading.Thread | None = None
        self._published_roots = b""  # chain_fingerprint of the last published chain
        self._tls = client_context(options.ca_cert, options.cert, options.key)
        self._session = Session(
            SessionSettings(
                host=options.host, port=options.port, client_id=options.client_id,
                subscriptions=tuple(all_devices(options.prefix, leaf) for leaf in INBOUND_LEAVES),
                session_expiry_s=SESSION_EXPIRY_S, keepalive_s=options.keepalive_s,
                reconnect_min_s=1, reconnect_max_s=30, tcp_nodelay=True,
            ),
            log=log, error=TransportError, deliver=self._queue.put,
            watcher=_Watcher(f"{options.host}:{options.port}", self._republish),
        )

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, wait_s: float = 10.0) -> bool:
        """Connect (asynchronously, retried forever) and start the worker; True when
        connected within ``wait_s``."""
        inbound = InboundWorker(self.service, self._session, self._queue,
                                prefix=self.options.prefix, max_payload=self.options.max_payload)
        self._worker = threading.Thread(target=inbound.run, name="cloud-mqtt-worker", daemon=True)
        self._worker.start()
        self._redeliverer = threading.Thread(target=self._redeliver_loop,
                                             name="cloud-mqtt-redeliver", daemon=True)
        self._redeliverer.start()
        self.service.set_publisher(self)
        self._session.start(self._tls)
        return self._session.wait_connected(wait_s)

    def stop(self) -> None:
        self._stopping.set()
        self.service.set_publisher(None)
        self._session.stop()
        self._queue.close()
        for thread in (self._worker, self._redeliverer):
            if thread is not None:
                thread.join(timeout=10)

    @property
    def connected(self) -> bool:
        return self._session.connected()

    # --- outbound -----------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement. Raises
        TransportError when it is down or the PUBACK does not come in time."""
        self._session.publish_and_wait(topic, payload, timeout=PUBLISH_TIMEOUT_S,
                                       retain=retain)

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
            if not self._session.connected():
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
