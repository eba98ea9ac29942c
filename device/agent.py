"""The agent: camera -> motion -> recorder -> sealed store, plus button, control socket,
retention ticks, optional services and a status file.

One thread runs the camera loop (read a frame, analyse it, hand it to the recorder);
the control socket and a GPIO button call back from their own threads and only queue a
press. Optional services (the release side, the Home Assistant bridge) are built by
`device.compose.optional_services` from an `AgentContext` (device.service), started
after the store and stopped before it.

`status.json` in the state directory is rewritten atomically (temp file, fsync,
rename) about once a second and whenever a clip ends. It holds no footage and no key.

A camera failure never ends the daemon: the camera is stopped, and reopened after a
back-off. The recorder absorbs store failures (see device.recorder). SIGTERM/SIGINT
end the loop; the clip in progress is finished and sealed before the process exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from device import instance_lock
from device.button.base import Button
from device.button.control import ControlServer
from device.button.factory import make_button
from device.button.sim import SimButton
from device.camera.base import Camera, EncoderSettings
from device.camera.factory import make_camera
from device.clock import Clock, ManualClock
from device.compose import optional_services
from device.config import AgentConfig
from device.errors import CameraError, DoorbellError, StorageFull
from device.motion import MotionDetector
from device.recorder import ClipWriter, Recorder
from device.service import AgentContext, Service, service_reports
from device.status_file import STATUS_FILE, write_json_atomic
from device.storage_report import StorageReport
from device.systemd import Notifier, ServiceStatus, Watchdog
from device.vault import SealedStore, open_store

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # wall-clock seconds between status rewrites
RETENTION_EVERY = timedelta(minutes=1)
CAMERA_RETRY_S = 5.0


class _RecoveryGate:
    """The store as the recorder sees it: no clip opens before recovery has run."""

    def __init__(self, store: SealedStore) -> None:
        self._store = store
        self.recovered = False
        self.pending = ""

    def open_clip(self, start: datetime, /) -> ClipWriter:
        if not self.recovered:
            raise StorageFull(self.pending or "the store has not been recovered yet")
        return self._store.open_clip(start)


@dataclass(slots=True)
class _Counters:
    frames: int = 0
    camera_errors: int = 0
    started_at: datetime | None = None
    presses: int = 0
    motion_starts: int = 0


class Agent:
    """Composes the parts. Build with `Agent.from_config`; `run()` blocks until stopped.

    `simulated=True` drives the clock from the camera's frame times (so a simulation
    faster than real time keeps epochs, retention and event times consistent).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock,
        store: SealedStore,
        simulated: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.simulated = simulated
        self.state_dir = config.agent.state_dir
        self._presses: queue.SimpleQueue[datetime] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._counters = _Counters()
        self._button: Button = make_button(config.button, clock)
        self._camera: Camera | None = None
        cam = config.camera
        self._gate = _RecoveryGate(store)
        self._recorder = Recorder(
            self._gate, config.recorder, width=cam.width, height=cam.height, fps=float(cam.fps)
        )
        self._motion = MotionDetector(config.motion, width=cam.lores_width, height=cam.lores_height)
        socket_path = config.agent.control_socket or (self.state_dir / "agent.sock")
        self._control = ControlServer(
            socket_path, {"ring": self._ring, "status": self._status_line}
        )
        self._services: list[Service] = []
        self._notifier = notifier if notifier is not None else Notifier(None)
        self._watchdog = Watchdog(self._notifier, None)
        self._service_status = ServiceStatus(self._notifier)
        self._status_lock = threading.Lock()
        self._last_status_write = 0.0
        self._last_retention: datetime | None = None
        self._camera_state = "stopped"
        self._storage = StorageReport(store)
        self._lock: instance_lock.InstanceLock | None = None

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        *,
        clock: Clock,
        simulated: bool = False,
        notifier: Notifier | None = None,
    ) -> Agent:
        """Take the state directory's lock, then open the store (recovering what a
        crash left) and build the agent.

        The lock comes first: a second agent on the same directory stops with
        AgentAlreadyRunning before it has touched the store, so it cannot mark the
        running agent's clip truncated. Raises DoorbellError subclasses from the lock and
        the store (bad recipients, index errors).
        """
        lock = instance_lock.acquire(config.agent.state_dir)
        try:
            store = open_store(config, clock=clock.now)
            agent = cls(config, clock=clock, store=store, simulated=simulated, notifier=notifier)
            agent._lock = lock
            agent.recover_store()
            context = AgentContext(config=config, store=store, clock=clock, status=agent.status)
            for service in optional_services(context):
                agent.add_service(service)
        except BaseException:
            lock.release()
            raise
        return agent

    def recover_store(self) -> bool:
        """Run the store's crash recovery; True once it has succeeded.

        On a full disk recovery itself may fail (the index cannot grow): the agent then
        runs without opening clips (the recorder sees `StorageFull`, the status says so)
        and tries again at every retention tick, after retention has had its chance.
        Other index errors are raised: the store cannot be trusted.
        """
        if self._gate.recovered:
            return True
        try:
            report = self.store.recover()
        except StorageFull as exc:
            self._gate.pending = f"start-up recovery waits for space: {exc}"
            log.error("%s", self._gate.pending)
            return False
        self._gate.recovered = True
        self._gate.pending = ""
        if not report.clean:
            log.warning("start-up recovery: %s", report)
        return True

    def add_service(self, service: Service) -> None:
        self._services.append(service)

    def request_stop(self) -> None:
        """Ask the loop to end after the current frame (signal-safe)."""
        self._stop.set()

    # -- the loop ----------------------------------------------------------------

    def run(self, *, duration_s: float | None = None, watchdog: Watchdog | None = None) -> None:
        """Run until `request_stop`, the end of the camera's stream, or `duration_s` of
        camera time. Raises CameraError only in simulation (a daemon retries)."""
        if watchdog is not None:
            self._watchdog = watchdog
        self._counters.started_at = self.clock.now()
        self._button.start(self._presses.put)
        try:  # the socket appears only once a `ring` sent through it can be taken
            self._control.start()
        except BaseException:
            self._button.stop()
            raise
        started: list[Service] = []
        try:
            for service in self._services:
                try:
                    service.start()
                except Exception:  # an optional service never stops the recording
                    log.exception("service %s failed to start", type(service).__name__)
                    continue
                started.append(service)
            self._notifier.ready(f"{self.config.agent.device_id}: watching")
            self._loop(duration_s)
        finally:
            self._notifier.stopping()
            self._recorder.close()
            for service in reversed(started):
                try:
                    service.stop()
                except Exception:
                    log.exception("service %s failed to stop", type(service).__name__)
            self._button.stop()
            self._control.stop()
            if self._camera is not None:
                self._camera.stop()
            self._camera_state = "stopped"
            self._write_status(state="stopped", force=True)
            self.store.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _open_camera(self) -> Camera:
        bell = self._button.press if isinstance(self._button, SimButton) else None
        camera = make_camera(
            self.config.camera,
            self.clock,
            encoder=EncoderSettings.from_recorder(self.config.recorder),
            on_bell=bell,
        )
        camera.start()
        self._camera_state = "running"
        return camera

    def _loop(self, duration_s: float | None) -> None:
        first: datetime | None = None
        while not self._stop.is_set():
            try:
                if self._camera is None:
                    self._camera = self._open_camera()
                frame = self._camera.read()
            except CameraError as exc:
                self._camera_failed(exc)
                if self.simulated:
                    raise
                self._stop.wait(CAMERA_RETRY_S)
                # The loop is alive while it waits for the camera: a missing camera must
                # not make systemd restart the agent (tokens and escrow still run).
                self._watchdog.beat()
                continue
            if frame is None:
                log.info("camera stream ended")
                return
            if first is None:
                first = frame.timestamp
            if self.simulated and isinstance(self.clock, ManualClock):
                self.clock.set(frame.timestamp)
            presses = self._drain_presses()
            update = self._motion.update(frame.lores, frame.timestamp)
            self._counters.motion_starts += int(update.started)
            finished = self._recorder.clips_finished + self._recorder.clips_failed
            self._recorder.process(frame, update, presses)
            self._counters.frames += 1
            self._watchdog.beat()
            self._tick_retention(frame.timestamp)
            changed = self._recorder.clips_finished + self._recorder.clips_failed != finished
            self._write_status(state="running", force=changed)
            if duration_s is not None and (frame.timestamp - first).total_seconds() >= duration_s:
                return

    def _camera_failed(self, exc: CameraError) -> None:
        self._counters.camera_errors += 1
        self._camera_state = f"error: {exc}"
        log.error("camera failed: %s", exc)
        # The reopened camera starts a new timeline (frame 0, pts 0) and may see a
        # different picture: new stream for the recorder, new background for motion.
        self._recorder.new_stream()
        cam = self.config.camera
        self._motion = MotionDetector(
            self.config.motion, width=cam.lores_width, height=cam.lores_height
        )
        if self._camera is not None:
            with contextlib.suppress(Exception):
                self._camera.stop()
        self._camera = None
        self._write_status(state="running", force=True)

    def _drain_presses(self) -> list[datetime]:
        presses: list[datetime] = []
        while True:
            try:
                presses.append(self._presses.get_nowait())
            except queue.Empty:
                break
        self._counters.presses += len(presses)
        return presses

    def _tick_retention(self, now: datetime) -> None:
        if self._last_retention is not None and now - self._last_retention < RETENTION_EVERY:
            return
        self._last_retention = now
        try:
            self.store.enforce_retention()
        except (DoorbellError, OSError) as exc:
            log.error("retention failed: %s", exc)
        if not self._gate.recovered:
            try:
                self.recover_store()
            except DoorbellError as exc:
                log.error("recovery failed again: %s", exc)

    # -- control socket ------------------------------------------------------------

    def _ring(self) -> str:
        if not isinstance(self._button, SimButton):
            raise DoorbellError("this agent has a GPIO button; it cannot be rung from software")
        if not self._button.press():
            raise DoorbellError("the button is not started yet")
        return "ok ring"

    def _status_line(self) -> str:
        return json.dumps(self.status(), sort_keys=True)

    # -- status --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The agent's health as JSON-ready data (no footage, no keys)."""
        rec = self._recorder
        storage = self._storage_status()
        last = rec.last_clip
        last_clip = None
        if last is not None:
            last_clip = {
                "id": getattr(last.record, "id", None),
                "start": last.start.isoformat(),
                "end": last.end.isoformat(),
                "bytes": last.bytes,
                "events": [kind for kind, _ in last.events],
                "outcome": last.outcome,
            }
        return {
            "v": 1,
            "device": self.config.agent.device_id,
            "recording": rec.recording,
            "storage": storage,
            "last_clip": last_clip,
            "clips_sealed": rec.clips_finished,
            "clips_failed": rec.clips_failed,
            "camera": {
                "source": self.config.camera.source,
                "state": self._camera_state,
                "frames": self._counters.frames,
                "errors": self._counters.camera_errors,
            },
            "button_presses": self._counters.presses,
            "motion": {"active": self._motion.active, "starts": self._counters.motion_starts},
            "clock": {
                "now": self.clock.now().isoformat(),
                "synchronized": self.clock.synchronized(),
                "simulated": self.simulated,
            },
            "services": service_reports(self._services),
        }

    def _storage_status(self) -> dict[str, Any]:
        storage = self._storage.read(self._recorder.clips_finished + self._recorder.clips_failed)
        storage["full"] = bool(storage["full"]) or self._recorder.storage_full
        if self._gate.pending:
            storage["full"] = True
            storage["reason"] = self._gate.pending
        return storage

    def _write_status(self, *, state: str, force: bool) -> None:
        mono = time.monotonic()
        if not force and mono - self._last_status_write < STATUS_EVERY_S:
            return
        self._last_status_write = mono
        data = self.status()
        data["state"] = state
        data["updated_at"] = datetime.now(UTC).isoformat()
        try:
            write_json_atomic(self.state_dir / STATUS_FILE, data)
        except OSError as exc:
            log.warning("cannot write status file: %s", exc)
        self._service_status.update(
            device_id=self.config.agent.device_id,
            recording=self._recorder.recording,
            clock_synchronized=self.clock.synchronized(),
        )
