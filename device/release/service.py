"""`ReleaseService`: the release side wired into the agent, with start() and stop().

Two threads. The intake thread does every decision in order, so no two decisions race:
it takes a message from the MQTT link's bounded queue and hands a token to the handler
(then acknowledges it, once the decision is durable) or an `escrow-ack` to the escrow
publisher; re-checks deferred tokens once the clock is synchronized; publishes the
durable outbox (results now, owner notices when due; a delayed notice waits for a
synchronized clock); re-publishes unacknowledged escrow blobs; and refreshes the
retained status with the agent's health. The job thread runs accepted jobs (re-seal and
upload can take minutes; a job that hit a transport failure waits with exponential
backoff), so a long upload never stalls the intake of tokens; when a job ends, the job
thread publishes its result at once (the outbox is locked, so both threads may flush
it). Neither thread polls faster than its work needs: the intake's chores run after
each message, once per `ServiceTiming.poll_s` while one of them has work waiting, and
otherwise when woken (the link came up, the vault stored an escrow blob, a job ran) or
when the status falls due, at least every `idle_s`; the job thread sleeps until a token
is accepted or a retry falls due (docs/architecture.md, "Release threads").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from device.clock import Clock
from device.config import AgentConfig, check_private_file
from device.errors import ConfigError, DoorbellError, EnvironmentFault, TransportError
from device.link import Inbound, LinkSettings, MqttLink, PahoLink
from device.release.audit import AuditLog
from device.release.db import ReleaseDb
from device.release.decision import Decision
from device.release.escrow import EscrowPublisher, EscrowSource
from device.release.handler import ContextSource, ReleaseHandler
from device.release.handover import Handover
from device.release.jobs import Job, JobStore
from device.release.keys import DeviceKeys
from device.release.layout import ReleaseLayout
from device.release.log_gate import RootLogGate
from device.release.messages import status_payload
from device.release.publisher import OutboxPublisher
from device.release.records import ReleaseRecords
from device.release.replay import ReplayState
from device.release.roots import load_root, log_seed_path, root_keeper
from device.release.runner import MAX_UNEXPECTED_FAILURES, JobRunner, RunResult
from device.release.uploader import HttpUploader, Uploader
from device.release.vaultview import ClipVault
from protocol.keys import private_session_id
from protocol.topics import DeviceTopics
from protocol.trust_root_v2 import AnyTrustRoot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceTiming:
    """Seconds. `poll_s` bounds how long the intake thread waits for a message between
    its chores while one of them has work waiting (a deferred token, a message in the
    outbox, an escrow blob not yet acknowledged, the link down); a message is handled as
    it arrives, and the chores run after it. With none waiting it waits until the next
    status is due, at most `idle_s`, unless woken: an idle device's intake wakes a few
    times a minute, not every second (docs/architecture.md, "Release threads").
    `jobs_idle_s` bounds the job thread's sleep while no job waits for a retry: an
    accepted token wakes it."""

    poll_s: float = 1.0
    idle_s: float = 10.0
    status_every_s: float = 60.0
    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0
    publish_timeout_s: float = 30.0  # unacknowledged this long: publish again
    jobs_idle_s: float = 60.0


def link_settings(
    config: AgentConfig, topics: DeviceTopics, online: Callable[[], bytes]
) -> LinkSettings:
    """The MQTT link's settings from `[mqtt]`. Raises ConfigError for missing TLS files."""
    m = config.mqtt
    if m.ca_cert is None or m.client_cert is None or m.client_key is None:
        raise ConfigError("[mqtt] ca_cert, client_cert and client_key are required (TLS)")
    for what, path in (("ca_cert", m.ca_cert), ("client_cert", m.client_cert)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read [mqtt] {what} {path}: {exc.strerror}") from exc
    try:
        key_file = m.client_key.read_bytes()  # also names the session (private_session_id)
        check_private_file(m.client_key)
    except OSError as exc:
        raise ConfigError(f"cannot read [mqtt] client_key {m.client_key}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"[mqtt] client_key refused: {exc}") from exc
    return LinkSettings(
        host=m.host,
        port=m.port,
        client_id=private_session_id(config.agent.device_id, key_file),
        ca_cert=m.ca_cert,
        client_cert=m.client_cert,
        client_key=m.client_key,
        subscriptions=(topics.release, topics.escrow_ack, topics.trust_root),
        will_topic=topics.status,
        will_payload=status_payload(False, {}),
        keepalive_s=m.keepalive_s,
        session_expiry_s=m.session_expiry_s,
        max_payload_bytes=m.max_payload_bytes,
        inbound_queue=m.inbound_queue,
        online_payload=online,
    )


class ReleaseService:
    """The release side of the agent. Raises ConfigError from the constructor when a key,
    the trust root or the TLS files cannot be loaded; ReleaseStateError for the database.
    The agent runs it under `device.release.supervisor.ReleaseSupervisor`, which retries
    a failed setup instead of letting it stop recording."""

    def __init__(
        self,
        config: AgentConfig,
        vault: ClipVault,
        clock: Clock,
        *,
        escrow_outbox: EscrowSource | None = None,
        link: MqttLink | None = None,
        uploader: Uploader | None = None,
        health: Callable[[], Mapping[str, Any]] | None = None,
        timing: ServiceTiming = ServiceTiming(),
    ) -> None:
        self._config = config
        self._clock = clock
        self._timing = timing
        self._health = health
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        device_id = config.agent.device_id
        self.topics = DeviceTopics(device_id, config.mqtt.prefix)
        keys = DeviceKeys.load(config)
        self.roots = root_keeper(config)
        root = load_root(config, clock.now())
        self.layout = ReleaseLayout(config.agent.state_dir)
        self.db = ReleaseDb(self.layout.state_db)
        try:
            self.audit = AuditLog(self.layout.audit_log)
        except BaseException:
            self.db.close()
            raise
        try:
            self._build(config, vault, clock, keys, root, escrow_outbox, link, uploader)
        except BaseException:  # a setup that is retried must not leak open files
            self.audit.close()
            self.db.close()
            raise

    def _build(
        self,
        config: AgentConfig,
        vault: ClipVault,
        clock: Clock,
        keys: DeviceKeys,
        root: AnyTrustRoot,
        escrow_outbox: EscrowSource | None,
        link: MqttLink | None,
        uploader: Uploader | None,
    ) -> None:
        device_id = config.agent.device_id
        self.replay = ReplayState(self.db)
        self.jobs = JobStore(self.db)
        records = ReleaseRecords(self.replay, self.jobs, self.audit)
        self._handover = Handover()
        self.handler = ReleaseHandler(
            root=root,
            topics=self.topics,
            verification=ContextSource(device_id, config.release, clock),
            records=records,
            vault=vault,
            transport_identity=keys.transport_identity,
            log_gate=RootLogGate(config.agent.state_dir, keys.identity.public_key(),
                                 seed=log_seed_path(config)),
            handover=self._handover,
        )
        try:
            self.handler.context()  # an owner limit the protocol refuses is a config error
        except ValueError as exc:
            raise ConfigError(f"[release]: {exc}") from exc
        self.link: MqttLink = link or PahoLink(
            link_settings(config, self.topics, self._online_payload)
        )
        self.uploader: Uploader = uploader or HttpUploader(
            device_id=device_id, identity=keys.identity, stop=self._stop
        )
        self.runner = JobRunner(
            topics=self.topics,
            keys=keys,
            vault=vault,
            records=records,
            uploader=self.uploader,
            layout=self.layout,
            clock=clock,
            handover=self._handover,
            stop=self._stop,
        )
        self.outbox = OutboxPublisher(self.jobs, self.link, clock,
                                      timeout_s=self._timing.publish_timeout_s)
        self.escrow = (
            EscrowPublisher(escrow_outbox, self.link, self.topics.escrow)
            if escrow_outbox is not None
            else None
        )
        self._retry_at: dict[str, tuple[float, float]] = {}  # jti -> (monotonic due, delay)
        self._unexpected: dict[str, int] = {}  # jti -> unexpected failures in a row
        self._was_connected = False
        self._last_status = 0.0
        self._jobs_thread: threading.Thread | None = None
        self._job_wakeup = threading.Event()
        self._jobs_lock = threading.Lock()

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Connect the link and start the two threads. Raises TransportError."""
        self.link.connect()
        self._thread = threading.Thread(target=self._loop, name="release-intake", daemon=True)
        self._jobs_thread = threading.Thread(
            target=self._job_loop, name="release-jobs", daemon=True
        )
        self._thread.start()
        self._jobs_thread.start()

    def stop(self) -> None:
        """Stop both threads (an upload stops between chunks), publish `offline`, close."""
        self._stop.set()
        self._job_wakeup.set()
        self.link.wake()  # the intake thread may be waiting `poll_s` for a message
        for thread in (self._thread, self._jobs_thread):
            if thread is not None:
                thread.join(timeout=30)
        if self.escrow is not None:
            self.escrow.close()
        self._handover.clear()  # keys of a job that never ran leave memory now
        self.link.close(final_payload=status_payload(False, {}))
        self.uploader.close()
        self.audit.close()
        self.db.close()

    def alive(self) -> bool:
        """True while both threads run (for health checks and tests)."""
        return all(t is not None and t.is_alive() for t in (self._thread, self._jobs_thread))

    # --- status -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self._health is not None:
            try:
                body.update(self._health())
            except Exception:  # the agent's health reporter must not stop the release side
                log.exception("health reporter failed")
        try:
            body["release"] = {
                "state": "running",
                "jobs_running": len(self.jobs.running_jobs()),
                "deferred": len(self.jobs.deferred()),
                "outbox": self.jobs.pending_outbox(),
                "clock_synchronized": self._clock.synchronized(),
            }
            log_status = self.handler.log_status()  # the size the service proves from
            if log_status is not None:
                body["release"].update(log_status)
        except DoorbellError as exc:
            body["release"] = {"error": str(exc)[:200]}
        return body

    def _online_payload(self) -> bytes:
        return status_payload(True, self.health())

    def publish_status(self) -> None:
        """Publish the retained `online` status with the current health now."""
        try:
            self.link.publish(self.topics.status, self._online_payload(), qos=1, retain=True)
        except TransportError as exc:
            log.info("status not published: %s", exc)

    # --- the worker ---------------------------------------------------------------------
    def _loop(self) -> None:
        wait = 0.0  # the first pass at once
        while not self._stop.is_set():
            try:
                message = self.link.receive(wait)
                if message is not None:
                    self._on_message(message)
                self.chores()
                wait = self._intake_wait()
            except Exception:  # nothing may end the intake; the next pass tries again
                log.exception("release intake error")
                self._stop.wait(1.0)
                wait = self._timing.poll_s

    def _intake_wait(self) -> float:
        """Seconds the intake waits for a message before its next pass: `poll_s` while a
        chore has work waiting, else until the status falls due, within `poll_s` and
        `idle_s`."""
        if (not self.link.connected() or not self.jobs.quiet()
                or (self.escrow is not None and self.escrow.waiting)):
            return self._timing.poll_s
        status_due = self._last_status + self._timing.status_every_s - time.monotonic()
        return max(self._timing.poll_s, min(self._timing.idle_s, status_due))

    def _job_loop(self) -> None:
        wait = 0.0  # the first pass at once: jobs an earlier run left running
        while not self._stop.is_set():
            self._job_wakeup.wait(wait)
            self._job_wakeup.clear()
            try:
                self.run_jobs()
            except Exception:  # a job's unexpected error must not end the thread
                log.exception("release job error")
                self._stop.wait(1.0)
                wait = self._timing.poll_s  # the disk or the database: look again soon
                continue
            wait = self._job_wait()

    def _job_wait(self) -> float:
        """Seconds the job thread sleeps unless woken: until the first job waiting for a
        retry falls due, else `jobs_idle_s`. Every job left running after a pass waits
        for a retry; a new one sets the wake-up."""
        with self._jobs_lock:
            dues = [due for due, _ in self._retry_at.values()]
        now = time.monotonic()
        return max(0.0, min(dues, default=now + self._timing.jobs_idle_s) - now)

    def chores(self) -> bool:
        """The intake thread's pass between messages: deferred tokens, the outbox, escrow
        and status. Returns True when it did something."""
        busy = False
        connected = self.link.connected()
        if connected and not self._was_connected and self.escrow is not None:
            self.escrow.reset()
        self._was_connected = connected
        for outcome in self.handler.recheck_deferred():
            log.info("deferred token %s: %s", outcome.jti, outcome.status)
            if outcome.status is Decision.accepted:
                self._job_wakeup.set()
            busy = True
        busy |= self.outbox.flush()
        if self.escrow is not None and self.escrow.flush():
            busy = True
        now = time.monotonic()
        if connected and now - self._last_status >= self._timing.status_every_s:
            self._last_status = now
            self.publish_status()
        return busy

    def _on_message(self, message: Inbound) -> None:
        if message.topic == self.topics.release:
            try:
                before = self.handler.log_status()
                outcome = self.handler.handle(message.payload, oversized=message.oversized)
                after = self.handler.log_status()
            except EnvironmentFault as exc:
                log.error("release state unavailable, token left unacknowledged: %s", exc)
                return
            self.link.ack(message)
            if outcome.status is Decision.accepted:
                self._job_wakeup.set()
            if after != before:  # the service proves the next token from the new size
                self.publish_status()
        elif message.topic == self.topics.trust_root:
            self.handler.use_root(self.roots.apply_published(
                self.handler.root, message.payload, self._clock.now(), self.audit
            ))
            self.link.ack(message)
        elif message.topic == self.topics.escrow_ack:
            if self.escrow is not None:
                self.escrow.on_ack(message.payload)
            self.link.ack(message)
        else:
            log.warning("message on unexpected topic %s ignored", message.topic[:200])
            self.link.ack(message)

    def run_jobs(self) -> bool:
        """The job thread's pass: each due job runs once; a finished job's result is then
        sent from here rather than on the intake thread's next pass, up to `poll_s`
        later. Returns True when a job ran."""
        with self._jobs_lock:
            ran = self._run_jobs_locked()
        if ran:
            self.outbox.flush()
            self.link.wake()  # the intake looks at the outbox again while it holds a row
        return ran

    def _run_jobs_locked(self) -> bool:
        ran = False
        now = time.monotonic()
        for job in self.jobs.running_jobs():
            due, delay = self._retry_at.get(job.jti, (0.0, 0.0))
            if now < due or self._stop.is_set():
                continue
            ran = True
            result = self._run_one(job)
            if result.finished:
                self._retry_at.pop(job.jti, None)
            else:
                delay = min(max(delay * 2, self._timing.retry_initial_s), self._timing.retry_max_s)
                self._retry_at[job.jti] = (time.monotonic() + delay, delay)
        return ran

    def _run_one(self, job: Job) -> RunResult:
        """Run one job; an unexpected error is that job's alone: it is retried with
        backoff while the jobs after it run, and after `MAX_UNEXPECTED_FAILURES` in a
        row it ends ``job_failed`` (docs/protocol.md, "Jobs that cannot finish")."""
        try:
            result = self.runner.run(job)
        except EnvironmentFault:
            raise  # the disk or the database: every job would fail alike
        except Exception as exc:
            log.exception("release %s: unexpected error in its job", job.jti)
            failures = self._unexpected.get(job.jti, 0) + 1
            self._unexpected[job.jti] = failures
            detail = f"{type(exc).__name__}: {exc}"
            if failures < MAX_UNEXPECTED_FAILURES:
                return RunResult(False, None, detail)
            result = self.runner.give_up(job, f"{failures} unexpected failures; last {detail}")
        if result.finished:
            self._unexpected.pop(job.jti, None)
        return result
