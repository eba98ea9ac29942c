"""Brings the release side up and keeps trying: a release side that cannot start never
stops the agent, whose first job is recording.

Setting up the release side reads files an operator can get wrong: the MQTT TLS files,
the identity key, the transport identity and the trust root. `ReleaseSupervisor` is the
service the agent runs (`make_service`, called by `device.compose`). Its
`start()` never raises; a setup thread does the work in two steps:

1. the MQTT link (TLS files); once it is up it stays up, so the broker sees the device
   `online` with the release side's state in its retained status;
2. the `ReleaseService` (keys, trust root, release state), started on that link.

When a step fails, the supervisor logs one error naming the file and the problem (again
only when the problem changes), reports the release side ``unavailable`` with that
reason in the agent's status (`service_report`, shown under ``services.release`` in
status.json, ``doorbell-agent status`` and the MQTT status) and tries again after an
exponential backoff bounded by `SetupBackoff.max_s`, or sooner when one of the files it
reads changes, so fixing a file brings the release side up without a restart. A broker
that is down is not a setup failure: the link reconnects by itself.

While the release service is down, tokens the broker delivers wait unacknowledged in the
link's bounded queue; the service takes them in order when it starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.clock import Clock, clock_from_setting
from device.config import AgentConfig
from device.errors import DoorbellError, TransportError
from device.link import MqttLink, PahoLink
from device.release.escrow import EscrowSource
from device.release.messages import status_payload
from device.release.service import ReleaseService, ServiceTiming, link_settings
from device.release.vaultview import ClipVault, StoreVault
from protocol.topics import DeviceTopics

if TYPE_CHECKING:
    from device.service import AgentContext

log = logging.getLogger(__name__)

_FileStamp = tuple[str, int, int, int] | tuple[str]


@dataclass(frozen=True, slots=True)
class SetupBackoff:
    """Seconds between setup attempts: `initial_s`, doubling up to `max_s`; the files are
    checked for a change every `watch_s` in between."""

    initial_s: float = 2.0
    max_s: float = 300.0
    watch_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s or self.watch_s <= 0:
            raise ValueError("SetupBackoff needs 0 < initial_s <= max_s and watch_s > 0")


_TIMING = ServiceTiming()
_BACKOFF = SetupBackoff()


def watched_files(config: AgentConfig) -> tuple[Path, ...]:
    """The files the release side's setup reads (those the configuration names)."""
    paths = (
        config.release.trust_root,
        config.keys.identity_key,
        config.keys.transport_identity,
        config.mqtt.ca_cert,
        config.mqtt.client_cert,
        config.mqtt.client_key,
    )
    return tuple(p for p in paths if p is not None)


def _stamp(paths: tuple[Path, ...]) -> tuple[_FileStamp, ...]:
    stamps: list[_FileStamp] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError as exc:
            stamps.append((f"{path}: {exc.errno}",))
            continue
        stamps.append((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class ReleaseSupervisor:
    """The release side as the agent sees it. `start()` and `stop()` never raise."""

    service_name = "release"

    def __init__(
        self,
        config: AgentConfig,
        vault: ClipVault,
        clock: Clock,
        *,
        escrow_outbox: EscrowSource | None = None,
        health: Callable[[], Mapping[str, Any]] | None = None,
        timing: ServiceTiming = _TIMING,
        backoff: SetupBackoff = _BACKOFF,
    ) -> None:
        self._config = config
        self._vault = vault
        self._clock = clock
        self._escrow_outbox = escrow_outbox
        self._health = health
        self._timing = timing
        self._backoff = backoff
        self._files = watched_files(config)
        self.topics = DeviceTopics(config.agent.device_id, config.mqtt.prefix)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._link: MqttLink | None = None
        self._service: ReleaseService | None = None
        self._state = "stopped"
        self._reason = ""
        self._attempts = 0
        self._retry_at = 0.0  # monotonic
        self._since: datetime | None = None

    @property
    def service(self) -> ReleaseService | None:
        """The running release service, or None while it is not set up."""
        with self._lock:
            return self._service

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the setup thread; the first attempt runs at once."""
        with self._lock:
            self._state = "starting"
        self._thread = threading.Thread(target=self._run, name="release-setup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop setting up; stop the release service, or close the bare link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            service, link = self._service, self._link
            self._service = self._link = None
            self._state = "stopped"
        if service is not None:
            service.stop()  # closes the link with the final `offline` status
        elif link is not None:
            link.close(final_payload=status_payload(False, {}))

    # --- status -------------------------------------------------------------------------
    def service_report(self) -> dict[str, Any]:
        """The release side's state for the agent's status: ``running`` (with whether
        the broker is connected), ``starting``, ``unavailable`` (with the reason, the
        attempts so far and seconds to the next one) or ``stopped``."""
        with self._lock:
            link = self._link
            report: dict[str, Any] = {"state": self._state}
            if self._state == "unavailable":
                report["reason"] = self._reason
                report["attempts"] = self._attempts
                report["retry_in_s"] = round(max(0.0, self._retry_at - time.monotonic()), 1)
            if self._since is not None:
                report["since"] = self._since.isoformat()
        report["connected"] = link is not None and link.connected()
        if link is not None and not report["connected"] and link.problem():
            report["link_problem"] = link.problem()
        return report

    def _online_payload(self) -> bytes:
        """The retained `online` status: the release service's health once it runs,
        else the agent's status with this supervisor's report under ``release``."""
        service = self.service
        if service is not None:
            return status_payload(True, service.health())
        body: dict[str, Any] = {}
        if self._health is not None:
            try:
                body.update(self._health())
            except Exception:  # the agent's health reporter must not stop the release side
                log.exception("health reporter failed")
        # Under "release", as the running service reports its own health (release_*).
        body["release"] = self.service_report()
        return status_payload(True, body)

    def _publish_status(self) -> None:
        with self._lock:
            link = self._link
        if link is None or not link.connected():
            return  # the link publishes the status itself when it connects
        try:
            link.publish(self.topics.status, self._online_payload(), qos=1, retain=True)
        except TransportError as exc:
            log.info("release status not published: %s", exc)

    # --- the setup thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self._backoff.initial_s
        while not self._stop.is_set():
            stamp = _stamp(self._files)
            try:
                if self._attempt():
                    return
            except DoorbellError as exc:
                self._failed(str(exc), delay)
            except Exception as exc:  # nothing may end the agent; report and retry
                log.exception("release side setup failed unexpectedly")
                self._failed(f"unexpected {type(exc).__name__}: {exc}", delay)
            self._publish_status()
            deadline = time.monotonic() + delay
            while not self._stop.wait(min(self._backoff.watch_s, delay)):
                if time.monotonic() >= deadline or _stamp(self._files) != stamp:
                    break
            delay = min(delay * 2, self._backoff.max_s)

    def _attempt(self) -> bool:
        """One setup attempt; True once the release service runs (or we are stopping).
        Raises DoorbellError (ConfigError, TransportError, ReleaseStateError)."""
        with self._lock:
            link = self._link
        if link is None:
            link = PahoLink(link_settings(self._config, self.topics, self._online_payload))
            link.connect()
            with self._lock:
                if self._stop.is_set():
                    link.close()
                    return True
                self._link = link
        service = ReleaseService(
            self._config,
            self._vault,
            self._clock,
            escrow_outbox=self._escrow_outbox,
            link=link,
            health=self._health,
            timing=self._timing,
        )
        try:
            service.start()
        except BaseException:
            service.stop()
            with self._lock:
                self._link = None  # stop() closed it; the next attempt builds a new one
            raise
        with self._lock:
            if self._stop.is_set():
                stopping = True
            else:
                stopping = False
                self._service = service
                recovered = self._state == "unavailable"
                self._state, self._reason = "running", ""
                self._since = datetime.now(UTC)
        if stopping:
            service.stop()
            return True
        if recovered:
            log.info("release side is up after %d failed attempt(s)", self._attempts)
        service.publish_status()
        return True

    def _failed(self, reason: str, delay: float) -> None:
        with self._lock:
            repeated = self._state == "unavailable" and reason == self._reason
            self._state, self._reason = "unavailable", reason
            self._attempts += 1
            self._retry_at = time.monotonic() + delay
            if self._since is None or not repeated:
                self._since = datetime.now(UTC)
        if repeated:
            log.debug("release side still unavailable: %s", reason)
        else:
            log.error(
                "release side unavailable (recording continues; retrying up to every "
                "%.0f s and when the file changes): %s",
                self._backoff.max_s,
                reason,
            )


def make_service(context: AgentContext) -> ReleaseSupervisor | None:
    """The agent's hook (called by `device.compose`): the supervised release side
    when `[mqtt] enabled`, else None. The clock is the agent's (the kernel's in `run`,
    the frame clock in `simulate`) unless `[release] clock` says to assume it
    synchronized. Raises nothing: files that do not load are reported and retried."""
    config = context.config
    if not config.mqtt.enabled:
        return None
    clock: Clock = context.clock
    if config.release.clock != "kernel":
        clock = clock_from_setting(config.release.clock)
    return ReleaseSupervisor(
        config,
        StoreVault(context.store),
        clock,
        escrow_outbox=context.store.escrow_outbox,
        health=context.status,
    )
