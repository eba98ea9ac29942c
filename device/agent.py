"""The agent: camera -> motion -> recorder -> sealed store, plus button, control socket,
retention ticks, optional services and a status file.

One thread runs the camera loop (read a frame, analyse it, hand it to the recorder);
the control socket and a GPIO button call back from their own threads and only queue a
press. Optional services (the release side, the Home Assistant bridge) are built by
`device.compose.optional_services` from an `AgentContext` (device.service), started
after the store and stopped before it.

The daemon opens the store after its first frame is in the pre-roll: the store opens,
recovers and starts the services in a thread of its own (device.startup), and no clip
opens before that recovery has ended (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

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
from device.errors import CameraError, DoorbellError
from device.motion import MotionDetector
from device.recorder import Recorder
from device.service import AgentContext, Service, service_reports, start_services, stop_services
from device.startup import StoreGate
from device.status_file import STATUS_FILE, write_json_atomic
from device.status_report import Counters, Recording, status_document
from device.storage_report import StorageReport
from device.systemd import Notifier, ServiceStatus, Watchdog

if TYPE_CHECKING:  # the store's modules (age, cryptography) load when the store opens
    from device.vault import SealedStore

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # wall-clock seconds between status rewrites
RETENTION_EVERY = timedelta(minutes=1)
CAMERA_RETRY_S = 5.0


class Agent:
    """Composes the parts. Build with `Agent.from_config`; `run()` blocks until stopped.

    `simulated=True` drives the clock from the camera's frame times (so a simulation
    faster than real time keeps epochs, retention and event times consistent). Without
    a `store`, `run()` opens it after the first frame (`from_config(store_later=True)`).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock,
        store: SealedStore | None = None,
        simulated: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.simulated = simulated
        self.state_dir = config.agent.state_dir
        self._presses: queue.SimpleQueue[datetime] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._counters = Counters()
        self._button: Button = make_button(config.button, clock)
        self._camera: Camera | None = None
        cam = config.camera
        self._gate = StoreGate()
        self._recorder = Recorder(
            self._gate, config.recorder, width=cam.width, height=cam.height, fps=float(cam.fps)
        )
        self._motion = MotionDetector(config.motion, width=cam.lores_width, height=cam.lores_height)
        socket_path = config.agent.control_socket or (self.state_dir / "agent.sock")
        self._control = ControlServer(
            socket_path, {"ring": self._ring, "status": self._status_line}
        )
        self._services: list[Service] = []
        self._started: list[Service] = []
        self._announced = False  # READY=1 sent
        self._notifier = notifier if notifier is not None else Notifier(None)
        self._watchdog = Watchdog(self._notifier, None)
        self._service_status = ServiceStatus(self._notifier)
        self._status_lock = threading.Lock()
        self._last_status_write = 0.0
        self._last_retention: datetime | None = None
        self._camera_state = "stopped"
        self._storage: StorageReport | None = None
        self._lock: instance_lock.InstanceLock | None = None
        if store is not None:
            self._attach(store)

    @classmethod
    def from_config(
        cls,
        config: AgentConfig,
        *,
        clock: Clock,
        simulated: bool = False,
        notifier: Notifier | None = None,
        store_later: bool = False,
    ) -> Agent:
        """Take the state directory's lock, then open the store (recovering what a
        crash left) and build the agent.

        The lock comes first: a second agent on the same directory stops with
        AgentAlreadyRunning before it has touched the store, so it cannot mark the
        running agent's clip truncated. Raises DoorbellError subclasses from the lock and
        the store (bad recipients, index errors).

        With `store_later` (the daemon) only the lock is taken here: `run()` opens the
        store and builds the services in a start-up thread once the first frame is in
        the pre-roll, and raises their errors from the camera loop.
        """
        lock = instance_lock.acquire(config.agent.state_dir)
        try:
            agent = cls(config, clock=clock, simulated=simulated, notifier=notifier)
            agent._lock = lock
            if store_later:
                agent._gate.defer(agent._start_up)
            else:
                agent._open_store()
        except BaseException:
            lock.release()
            raise
        return agent

    @property
    def store(self) -> SealedStore:
        """The sealed store. Raises DoorbellError while start-up has not opened it."""
        store = self._gate.store
        if store is None:
            raise DoorbellError("the store is not open yet")
        return store

    def _attach(self, store: SealedStore) -> None:
        self._storage = StorageReport(store)
        self._gate.open(store)

    def _open_store(self) -> None:
        """Open the store, run its recovery, then build the configured services."""
        store = self._gate.open_recovered(self.config, self.clock)
        self._storage = StorageReport(store)
        context = AgentContext(
            config=self.config, store=store, clock=self.clock, status=self.status
        )
        for service in optional_services(context):
            self.add_service(service)

    def _start_up(self) -> None:
        """The daemon's start-up thread: the store, its recovery, then the services."""
        self._open_store()
        if not self._stop.is_set():
            self._start_services()
            self._write_status(state="running", force=True)

    def recover_store(self) -> bool:
        """Run the store's crash recovery; True once it has succeeded. On a full disk
        the agent runs without opening clips and tries again at every retention tick
        (`StoreGate.recover`); other index errors are raised."""
        return self._gate.recover()

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
        try:
            if self._gate.settled:  # the store was opened by from_config
                self._start_services()
                self._ready()
            self._loop(duration_s)
        finally:
            self._notifier.stopping()
            self._recorder.close()
            self._gate.join()  # a start-up still running ends before anything stops
            stop_services(self._started)
            self._button.stop()
            self._control.stop()
            if self._camera is not None:
                self._camera.stop()
            self._camera_state = "stopped"
            self._write_status(state="stopped", force=True)
            if self._gate.store is not None:
                self._gate.store.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _start_services(self) -> None:
        self._started.extend(start_services(self._services))

    def _ready(self) -> None:
        self._announced = True
        self._notifier.ready(f"{self.config.agent.device_id}: watching")

    def _first_pass_done(self) -> None:
        """The loop's first frame is in the pre-roll (or the camera is missing): tell
        systemd, then open the store in the background if that was deferred."""
        if not self._announced:
            self._ready()
        self._gate.begin()

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
            if self._gate.failure is not None:
                raise self._gate.failure
            try:
                if self._camera is None:
                    self._camera = self._open_camera()
                frame = self._camera.read()
            except CameraError as exc:
                self._camera_failed(exc)
                if self.simulated:
                    raise
                if first is None:
                    self._first_pass_done()
                self._stop.wait(CAMERA_RETRY_S)
                # The loop is alive while it waits for the camera: a missing camera must
                # not make systemd restart the agent (tokens and escrow still run).
                self._watchdog.beat()
                continue
            if frame is None:
                log.info("camera stream ended")
                return
            started = first is None
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
            if started:
                self._first_pass_done()
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
        if not self._gate.settled or self._gate.store is None:
            return  # the first tick runs once start-up has opened the store
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
        return status_document(
            device_id=self.config.agent.device_id,
            recording=Recording(rec.recording, rec.last_clip, rec.clips_finished,
                                rec.clips_failed),
            storage=self._storage_status(), camera_source=self.config.camera.source,
            camera_state=self._camera_state, counters=self._counters,
            motion_active=self._motion.active, clock=self.clock, simulated=self.simulated,
            services=service_reports(self._services))

    def _storage_status(self) -> dict[str, Any]:
        if self._storage is None:
            return {"full": False, "reason": "start-up is opening the store"}
        storage = self._storage.read(self._recorder.clips_finished + self._recorder.clips_failed)
        storage["full"] = bool(storage["full"]) or self._recorder.storage_full
        if self._gate.pending:
            storage["full"] = True
            storage["reason"] = self._gate.pending
        return storage

    def _write_status(self, *, state: str, force: bool) -> None:
        with self._status_lock:  # the loop, and once the start-up thread
            self._write_status_locked(state=state, force=force)

    def _write_status_locked(self, *, state: str, force: bool) -> None:
        mono = time.monotonic()
        if self._gate.store is None:
            return  # the status file waits until start-up has opened the store
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

