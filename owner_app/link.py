"""The owner's MQTT link behind a narrow seam: open, subscribe, receive, ack, close.

`mqtt_session.Session` (MQTT v5), TLS with the owner's certificate. With
`persistent` the session is kept (``clean_start=False`` from the very first connection,
and a session expiry), so that the broker queues every QoS 1 notice published while
the owner is offline, once the owner has connected once. Messages are acknowledged by
hand (`ack`), only after the caller has stored them, so a crash never loses one.

`open` fails closed: it returns only after a successful CONNACK, and maps what went
wrong to `BrokerUnreachable` (nothing answers at host:port), `TlsFailure` (the broker's
certificate is not from the bundle's CA or not for that name) or `CertificateRefused`
(the broker refused our certificate or the connection). paho and ssl errors never
escape. The inbound queue is bounded; while it is full the network thread waits, so the
broker holds the rest (flow control also asks it to send no more than half the queue
unacknowledged).
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from typing import Final

from paho.mqtt.reasoncodes import ReasonCode

from mqtt_session import Inbound, InboundQueue, Session, SessionSettings, Watcher
from owner_app.errors import BrokerUnreachable, CertificateRefused, TlsFailure, TransportError

__all__ = ["REVOKED_HINT", "Inbound", "LinkSettings", "OwnerLink"]

log = logging.getLogger(__name__)

REVOKED_HINT: Final = (
    "the owner certificate may have been revoked or replaced: ask the operator for a new "
    "owner bundle (`cloud-stub devices owner-cert <device> --replace`)"
)
# What OpenSSL says when the peer refused our certificate (TLS alerts, lower case).
_REFUSED_ALERTS: Final = ("certificate revoked", "certificate unknown", "bad certificate",
                          "certificate required", "unknown ca", "certificate expired",
                          "unsupported certificate", "access denied")


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Times in seconds."""

    host: str
    port: int
    client_id: str
    tls: ssl.SSLContext
    persistent: bool
    session_expiry_s: int
    connect_timeout_s: float = 10.0
    keepalive_s: int = 30
    inbound_queue: int = 64
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60


def _closed(text: str) -> bool:
    lowered = text.lower()
    return any(sign in lowered for sign in ("eof occurred", "connection reset",
                                             "broken pipe", "connection closed"))


def _refusal(text: str) -> bool:
    lowered = text.lower()
    return any(alert in lowered for alert in _REFUSED_ALERTS)


class _Answers(Watcher):
    """What the broker answered (network thread): the first CONNACK's session flag, a
    refusal, the first error since the last CONNACK, the connections lost."""

    def __init__(self) -> None:
        self.answered = threading.Event()  # a CONNACK or a failure before one
        self.refusal: ReasonCode | None = None
        self.last_error = ""
        self.session_present = False
        self.losses = 0

    def up(self, session_present: bool) -> None:
        self.refusal = None
        self.last_error = ""
        if not self.answered.is_set():
            self.session_present = session_present
        self.answered.set()

    def refused(self, reason: ReasonCode) -> None:
        self.refusal = reason
        self.answered.set()

    def down(self, reason: ReasonCode, was_up: bool, stopping: bool) -> None:
        if was_up and not stopping:
            self.losses += 1
            if reason.is_failure and not self.last_error:
                self.last_error = str(reason)
        self.answered.set()

    def paho_error(self, text: str) -> None:
        # The first error since the last CONNACK is the cause; paho logs follow-ups
        # ("Client is not connected") while it retries.
        if not self.last_error:
            self.last_error = text


class OwnerLink:
    """One connection to the broker (an `mqtt_session.Session`). Not reusable after
    `close`."""

    def __init__(self, settings: LinkSettings) -> None:
        self._s = settings
        # While the queue is full the network thread waits (until `close`): TCP stops
        # reading and the broker holds the rest. Once closing, a message is left
        # unacknowledged: the broker delivers it again.
        self._inbound = InboundQueue(settings.inbound_queue, wait_s=None, log=log)
        self._answers = _Answers()
        self._session = Session(
            SessionSettings(
                host=settings.host,
                port=settings.port,
                client_id=settings.client_id,
                persistent=settings.persistent,
                session_expiry_s=settings.session_expiry_s,
                keepalive_s=settings.keepalive_s,
                receive_maximum=max(1, settings.inbound_queue // 2),
                reconnect_min_s=settings.reconnect_min_s,
                reconnect_max_s=settings.reconnect_max_s,
            ),
            log=log,
            error=TransportError,
            deliver=self._inbound.put,
            watcher=self._answers,
        )

    @property
    def address(self) -> str:
        return f"{self._s.host}:{self._s.port}"

    @property
    def session_present(self) -> bool:
        """Whether the broker still held our session at the first connection."""
        return self._answers.session_present

    @property
    def losses(self) -> int:
        """Connections lost after the first CONNACK."""
        return self._answers.losses

    # --- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Connect and wait for the CONNACK. Raises BrokerUnreachable, TlsFailure,
        CertificateRefused or TransportError, each naming host:port."""
        s = self._s
        try:
            self._session.open(s.tls)
        except ssl.SSLCertVerificationError as exc:
            raise TlsFailure(
                f"TLS to the broker at {self.address} failed: its certificate is not "
                f"vouched for by the bundle's CA for that name ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            if _refusal(str(exc)):
                raise CertificateRefused(
                    f"the broker at {self.address} refused the owner certificate "
                    f"({exc.reason or exc}); {REVOKED_HINT}"
                ) from None
            raise TlsFailure(f"TLS to the broker at {self.address} failed: {exc}") from None
        except TimeoutError as exc:
            raise BrokerUnreachable(f"broker {self.address} did not answer: {exc}") from None
        except OSError as exc:
            raise BrokerUnreachable(
                f"broker {self.address} is unreachable: {exc.strerror or exc}"
            ) from None
        if not self._answers.answered.wait(s.connect_timeout_s):
            self.close()
            raise BrokerUnreachable(
                f"broker {self.address} gave no MQTT answer within {s.connect_timeout_s:g} s"
            )
        if self._session.connected():
            return
        refusal, error = self._answers.refusal, self._answers.last_error
        self.close()
        if refusal is not None:
            raise CertificateRefused(
                f"the broker at {self.address} refused the connection ({refusal}); "
                f"{REVOKED_HINT}"
            )
        if _refusal(error):
            raise CertificateRefused(
                f"the broker at {self.address} refused the owner certificate ({error}); "
                f"{REVOKED_HINT}"
            )
        if not error or _closed(error):
            # TLS 1.3: the broker checks our certificate after our side of the handshake
            # is done, and mosquitto then just closes: the CONNACK never comes.
            raise CertificateRefused(
                f"the broker at {self.address} closed the connection before answering "
                f"({error or 'no reason given'}): it refused the owner certificate or this "
                f"client; {REVOKED_HINT}"
            )
        raise TransportError(f"connection to the broker at {self.address} failed: {error}")

    def subscribe(self, topic: str, timeout: float) -> None:
        """Subscribe at QoS 1 (again after every reconnection) and wait for the SUBACK.
        Raises TransportError when it does not come or refuses the subscription."""
        self._session.subscribe(topic, timeout)

    def close(self) -> None:
        """Disconnect (the persistent session stays at the broker) and stop."""
        self._session.stop()
        self._inbound.close()

    # --- messages ----------------------------------------------------------------------

    def receive(self, timeout: float) -> Inbound | None:
        return self._inbound.get(timeout)

    def ack(self, message: Inbound) -> None:
        """Acknowledge a QoS 1 message once its outcome is stored (no-op for QoS 0 or
        while disconnected: the broker then delivers it again)."""
        self._session.ack(message)

    def connected(self) -> bool:
        return self._session.connected()

    @property
    def last_error(self) -> str:
        return self._answers.last_error
