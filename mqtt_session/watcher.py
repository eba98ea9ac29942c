"""What a session tells about its connection (`Watcher`, on the network thread), and
`ProblemLog`, which words why it is down and logs each new cause once
(docs/architecture.md, "One MQTT session")."""

from __future__ import annotations

import logging

from paho.mqtt.reasoncodes import ReasonCode

from protocol.connect_errors import describe_connection_error


class Watcher:
    """What the session tells about its connection, on the network thread. Each method
    does nothing here; a program overrides those it cares about. They must not raise."""

    def attempt(self) -> None:
        """A connection attempt begins."""

    def up(self, session_present: bool) -> None:
        """The broker accepted the connection; the subscriptions are sent."""

    def unreachable(self, cause: BaseException | None) -> None:
        """The attempt failed before MQTT (DNS, TCP, TLS); `cause` is the exception."""

    def refused(self, reason: ReasonCode) -> None:
        """The broker answered the CONNECT with a failure."""

    def down(self, reason: ReasonCode, was_up: bool, stopping: bool) -> None:
        """The connection closed (`was_up`: after a successful CONNACK)."""

    def paho_error(self, text: str) -> None:
        """paho logged an error (e.g. a TLS alert read after the handshake)."""


class ProblemLog(Watcher):
    """Keeps why the session is down in words naming the broker, and logs each new cause
    once (not at every retry) at `level`."""

    def __init__(self, log: logging.Logger, address: str, *, level: int = logging.WARNING,
                 link: str = "MQTT link") -> None:
        self._log = log
        self._address = address
        self._level = level
        self._name = link
        self.problem = ""  # "" while up or before the first attempt

    def note(self, problem: str, level: int | None = None) -> None:
        if problem != self.problem:
            self._log.log(self._level if level is None else level,
                          "%s; retrying with backoff", problem)
        self.problem = problem

    def up(self, session_present: bool) -> None:
        self.problem = ""

    def unreachable(self, cause: BaseException | None) -> None:
        words = describe_connection_error(cause) if cause is not None else "the connection failed"
        self.note(f"cannot reach the MQTT broker at {self._address}: {words}")

    def refused(self, reason: ReasonCode) -> None:
        self.note(f"the MQTT broker at {self._address} refused the connection: {reason}")

    def down(self, reason: ReasonCode, was_up: bool, stopping: bool) -> None:
        if not stopping:
            self.note(f"{self._name} to {self._address} down ({reason})", logging.WARNING)
