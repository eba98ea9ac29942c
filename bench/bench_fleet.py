"""A fleet of device sessions against one broker and the cloud stub on PostgreSQL.

Set-up (not timed): a deployment made by the `cloud-stub init` code, N devices enrolled
with the `cloud-stub devices enroll` code (on tmpfs when /dev/shm exists: enrolment
fsyncs every file), PostgreSQL (`tests.fixtures.postgres.postgres_cluster`), mosquitto
with the deployment's TLS, CRL and ACL (`tests.fixtures.broker.Broker`), and N light
device sessions (`bench/fleet_client.py`: MQTT 3.1.1 over TLS, each with its own
certificate, all on one event loop in this process). They are not agents: each builds
its escrow message with the device's code (`device.vault.epochs.escrow_message`, a
fresh pyrage identity sealed to the deployment's escrow recipient), and answers a
release token with a `result` (``uploaded``, no clips) built by
`device.release.messages.result_payload`, without verifying the token.

1. Bare baseline, same broker, TLS and sessions, before the service runs: an echo
   client with the cloud's certificate answers each escrow with an escrow-ack (rate of
   N escrow round trips), and sends a token-sized message to M devices' release topics
   at once, which each answers on its result topic.
2. `cloud-stub serve` starts as its own process on the PostgreSQL store.
3. Escrow: every session publishes its escrow (QoS 1) at once and waits for the
   service's escrow-ack. Figure: escrows acknowledged per second, against the bare
   escrow round trips per second (target: N = 1,000 in under 10 s).
4. Release: M/5 court-signed warrant requests of 5 devices each (the policy's cap)
   are submitted over HTTP, then approved all at once; the service signs and publishes
   M tokens and each device answers with a result. "Delivered to result" is from the
   moment a session holds its token to the moment the service has committed its result
   (a PostgreSQL NOTIFY from a trigger this benchmark adds on `tokens`); its baseline is
   from a session holding the echo's message to the echo holding the answer (target:
   p99 at most 5x). Also shown: approval to result against the echo's publish to
   answer, for the same M at once. Steps 1 (its release part) and 4 run `--rounds`
   times (3), each round with M other devices, and the latencies of all rounds are
   pooled before their percentiles are taken: a p99 of M = 100 values is their second
   highest and moved by a whole unit from run to run; of 300, it is the third highest.
5. Memory: RSS of mosquitto and of `cloud-stub serve` after the release, against the
   same processes idle before the sessions connected (broker) and before the escrows
   arrived (service); peak (VmHWM) as well.

Every process started here (PostgreSQL, mosquitto, cloud-stub serve) is stopped on the
way out, also on failure or SIGTERM/SIGINT.
Run: .venv/bin/python bench/bench_fleet.py [--sessions 1000] [--released 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import json
import os
import resource
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psycopg
import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._report import ratio_line
from bench.fleet_client import MqttSession
from cloud_stub.policy.courts import load_court_key
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.store.principals import create_principal
from device.release.messages import result_payload
from device.vault.epochs import Epoch, escrow_message
from protocol.messages import EscrowAck, parse_escrow_ack
from protocol.tls import client_context
from protocol.topics import DeviceTopics, all_devices
from tests.fixtures.broker import Broker, free_port
from tests.fixtures.deployment import TestDeployment, make_deployment
from tests.fixtures.policy import COURT_ID, PolicyWorld
from tests.fixtures.postgres import create_database, postgres_cluster

DEVICES_PER_REQUEST = 5  # the default policy's particularity cap for a warrant
CONNECT_CONCURRENCY = 32  # TLS handshakes in flight while the fleet connects
TOKEN_SIZED = 2500  # bytes of the echo's stand-in token (a real one with one epoch key)
START_TIMEOUT_S = 60.0
WAIT_S = 120.0
WAIT_PER_ESCROW_S = 0.2  # a slow service still finishes; the figure shows it
ESCROW_TARGET_S = 10.0  # for 1,000 sessions; scaled to the session count
P99_TARGET_RATIO = 5.0
REASON = {"reason": "Warrant verified with the issuing court's clerk."}
RESULT_NOTIFY = "bench_fleet_result"
RESULT_TRIGGER = f"""
CREATE FUNCTION bench_fleet_notify() RETURNS trigger AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status
     AND NEW.status IN ('uploaded', 'rejected', 'deferred', 'preserved') THEN
    PERFORM pg_notify('{RESULT_NOTIFY}', NEW.jti);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_fleet_result AFTER UPDATE ON tokens
  FOR EACH ROW EXECUTE FUNCTION bench_fleet_notify();
"""
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl


class FleetBenchError(RuntimeError):
    """A phase did not complete: what was missing and the log to read."""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM the service if this process dies, even -9."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(port: int) -> list[int]:
    """The postmaster listening on `port` and its children (one backend per connection)."""
    postmaster = None
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if argv[0].endswith(b"postgres") and str(port).encode() in argv:
            postmaster = int(entry.name)
    if postmaster is None:
        return []
    return [postmaster, *(pid for pid, ppid in parents.items() if ppid == postmaster)]


@dataclass(frozen=True)
class CpuShare:
    """CPU seconds the service, PostgreSQL and the broker spent over a phase's wall time."""

    wall_s: float
    service_s: float
    postgres_s: float
    broker_s: float

    def line(self, phase: str) -> str:
        return (f"{phase}: {self.wall_s:.2f} s wall; CPU of the service {self.service_s:.2f} s, "
                f"PostgreSQL {self.postgres_s:.2f} s, mosquitto {self.broker_s:.2f} s "
                f"(2 cores shared, load average {os.getloadavg()[0]:.1f})")


def conninfo(store_url: str) -> str:
    """A libpq conninfo for a ``postgresql+psycopg://user@host:port/db`` URL."""
    rest = store_url.split("://", 1)[1]
    user, _, rest = rest.partition("@")
    hostport, _, db = rest.partition("/")
    host, _, port = hostport.partition(":")
    return f"host={host} port={port} user={user} dbname={db}"


@dataclass
class Device:
    """One light device session: its id, topics, escrow payload and what it saw when."""

    device_id: str
    topics: DeviceTopics
    context: ssl.SSLContext
    escrow: bytes
    epoch: str
    session: MqttSession | None = None
    acked: dict[str, asyncio.Future[float]] = field(default_factory=dict)


class Fleet:
    """The light sessions and what they do: escrow, wait for the ack, answer tokens."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self.by_id = {d.device_id: d for d in devices}
        self.token_at: dict[str, float] = {}

    def on_message(self, session: MqttSession, topic: str, payload: bytes) -> None:
        device = self.by_id[session.client_id]
        now = time.perf_counter()
        if topic == device.topics.escrow_ack:
            epoch = parse_escrow_ack(payload).epoch
            waiter = device.acked.get(epoch)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        elif topic == device.topics.release:
            jti = token_jti(payload)
            self.token_at[jti] = now
            session.publish(device.topics.result, result_payload(
                jti=jti, status="uploaded", reason="", detail="fleet benchmark session"))

    async def connect(self, host: str, port: int) -> float:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(device: Device) -> None:
            async with gate:
                session = MqttSession(device.device_id, device.context, self.on_message)
                await session.connect(host, port)
                await session.subscribe([device.topics.release, device.topics.escrow_ack])
                device.session = session

        started = time.perf_counter()
        await asyncio.gather(*(one(d) for d in self.devices))
        return time.perf_counter() - started

    async def escrow_all(self) -> tuple[float, list[float]]:
        """Every session publishes its escrow at once; (seconds to the last ack,
        per-session publish-to-ack latencies)."""
        loop = asyncio.get_running_loop()
        for device in self.devices:
            device.acked = {device.epoch: loop.create_future()}
        started = time.perf_counter()
        for device in self.devices:
            assert device.session is not None
            device.session.publish(device.topics.escrow, device.escrow)
        waiters = [d.acked[d.epoch] for d in self.devices]
        wait_s = WAIT_S + len(waiters) * WAIT_PER_ESCROW_S
        _, pending = await asyncio.wait(waiters, timeout=wait_s)
        if pending:
            raise FleetBenchError(f"{len(pending)} of {len(waiters)} escrows were not "
                                  f"acknowledged within {wait_s:.0f} s")
        acks = [w.result() for w in waiters]
        return max(acks) - started, [a - started for a in acks]

    async def close(self) -> None:
        await asyncio.gather(*(d.session.close() for d in self.devices if d.session),
                             return_exceptions=True)


def token_jti(payload: bytes) -> str:
    """The jti of a flattened JWS token (not verified: a light session trusts it)."""
    envelope = json.loads(payload)
    claims = json.loads(base64.urlsafe_b64decode(envelope["payload"] + "=="))
    return str(claims["jti"])


def stand_in_token(jti: str) -> bytes:
    """A flattened-JWS-shaped message of a real token's size, for the bare baseline."""
    claims = base64.urlsafe_b64encode(json.dumps({"jti": jti}).encode()).decode().rstrip("=")
    envelope = {"payload": claims, "signatures": [], "pad": ""}
    envelope["pad"] = "x" * max(0, TOKEN_SIZED - len(json.dumps(envelope)))
    return json.dumps(envelope).encode()


class Echo:
    """The bare baseline's cloud side: a light session with the cloud's certificate that
    acknowledges escrows without storing them and records when results arrive."""

    def __init__(self, deployment: TestDeployment) -> None:
        creds = deployment.credentials("cloud")
        context = client_context(creds.ca_cert, creds.cert, creds.key)
        self.prefix = deployment.prefix
        self.session = MqttSession(f"bench-echo-{secrets.token_hex(4)}", context, self.on_message)
        self.result_at: dict[str, float] = {}

    async def start(self, host: str, port: int) -> None:
        await self.session.connect(host, port)
        await self.session.subscribe([all_devices(self.prefix, "escrow"),
                                      all_devices(self.prefix, "result")])

    def on_message(self, session: MqttSession, topic: str, payload: bytes) -> None:
        now = time.perf_counter()
        device_id, _, leaf = topic[len(self.prefix) + 1:].partition("/")
        if leaf == "escrow":
            epoch = json.loads(payload)["epoch"]
            session.publish(DeviceTopics(device_id, self.prefix).escrow_ack,
                            EscrowAck(epoch=epoch).to_bytes())
        elif leaf == "result":
            self.result_at[json.loads(payload)["jti"]] = now


async def bare_release(fleet: Fleet, echo: Echo, devices: list[Device]
                       ) -> tuple[list[float], list[float]]:
    """Echo sends a token-sized message to each of `devices` at once; (delivered to
    answer, publish to answer) per message, in seconds."""
    jtis = {d.device_id: f"bare-{secrets.token_hex(8)}" for d in devices}
    started = time.perf_counter()
    for device in devices:
        echo.session.publish(device.topics.release, stand_in_token(jtis[device.device_id]))
    deadline = time.monotonic() + WAIT_S
    while not all(j in echo.result_at for j in jtis.values()):
        if time.monotonic() > deadline:
            raise FleetBenchError("the bare round trips did not all come back")
        await asyncio.sleep(0.005)
    delivered = [echo.result_at[j] - fleet.token_at[j] for j in jtis.values()]
    whole = [echo.result_at[j] - started for j in jtis.values()]
    return delivered, whole


@dataclass
class Service:
    """`cloud-stub serve` as a process of its own."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def serve(deployment: TestDeployment, store_url: str, broker: Broker, workdir: Path
          ) -> Iterator[Service]:
    """Start `cloud-stub serve`; yield once its API answers and its MQTT link is up;
    stop it (SIGTERM, then SIGKILL) on the way out."""
    port = free_port()
    log_path = workdir / "serve.log"
    binary = Path(sys.executable).parent / "cloud-stub"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "--deployment", str(deployment.layout.root),
             "--store-url", store_url, "--host", "127.0.0.1", "--port", str(port),
             "--broker-host", broker.host, "--broker-port", str(broker.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent)
    service = Service(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise FleetBenchError(f"cloud-stub serve exited with {process.returncode}:\n"
                                      f"{service.log()}")
            if "connected to the broker" in service.log():
                try:
                    if httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise FleetBenchError(f"cloud-stub serve did not start:\n{service.log()}")
            time.sleep(0.1)
        yield service
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def prepare_store(deployment: TestDeployment, store_url: str) -> tuple[dict[str, str],
                                                                       dict[str, str], str]:
    """Create the schema, the result trigger and an agency and a reviewer; returns their
    headers and the agency's age recipient."""
    service = CloudService.open(deployment.layout.root, store_url=store_url)
    try:
        recipient = str(pyrage.x25519.Identity.generate().to_public())
        now = datetime.now(UTC)
        with service.store.transaction() as session:
            _, agency = create_principal(session, name="fleet-agency", role="agency",
                                         org="metro-pd", now=now, recipient=recipient)
            _, reviewer = create_principal(session, name="fleet-reviewer", role="reviewer",
                                           org="legal", now=now)
    finally:
        service.close()
    with psycopg.connect(conninfo(store_url), autocommit=True) as conn:
        conn.execute(RESULT_TRIGGER)
    return ({"Authorization": f"Bearer {agency}"}, {"Authorization": f"Bearer {reviewer}"},
            recipient)


def make_devices(deployment: TestDeployment, n: int, now: datetime) -> list[Device]:
    """Enrol `n` devices with the enrolment code; each with its TLS context and an escrow
    message for an epoch that covers the warrant window of the release phase."""
    escrow_to = pyrage.x25519.Recipient.from_str(
        deployment.layout.escrow_recipient.read_text().strip())
    start, end = now - timedelta(hours=36), now - timedelta(hours=1)
    devices = []
    for _ in range(n):
        bundle = deployment.enroll_device(deployment.new_device_id("fleet"))
        device_id = bundle.device_id_file.read_text().strip()
        identity = pyrage.x25519.Identity.generate()
        epoch = Epoch(f"{int(start.timestamp())}-{secrets.token_hex(4)}", start, end,
                      str(identity.to_public()))
        sealed = pyrage.encrypt(f"{identity}\n".encode(), [escrow_to])
        devices.append(Device(
            device_id=device_id,
            topics=DeviceTopics(device_id, deployment.prefix),
            context=client_context(bundle.ca_cert, bundle.mqtt_cert, bundle.mqtt_key),
            escrow=escrow_message(device_id, epoch, sealed),
            epoch=epoch.id,
        ))
    return devices


async def listen_results(store_url: str, recorded: dict[str, float],
                         ready: asyncio.Event) -> None:
    """Record when the service commits each token's result (NOTIFY from the trigger)."""
    async with await psycopg.AsyncConnection.connect(conninfo(store_url),
                                                     autocommit=True) as conn:
        await conn.execute(f"LISTEN {RESULT_NOTIFY}")
        ready.set()
        async for note in conn.notifies():
            recorded.setdefault(note.payload, time.perf_counter())


@dataclass
class Figures:
    lines: list[str] = field(default_factory=list)
    ok: bool = True

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


async def run(args: argparse.Namespace, deployment: TestDeployment, devices: list[Device],
              broker: Broker, store_url: str, workdir: Path, figures: Figures,
              principals: tuple[dict[str, str], dict[str, str], str],
              court_key: Ed25519PrivateKey) -> None:
    assert broker._process is not None
    broker_idle = rss_mib(broker._process.pid)[0]
    fleet = Fleet(devices)
    m = args.released
    rounds = [devices[r * m:(r + 1) * m] for r in range(args.rounds)]  # M others a round
    try:
        connect_s = await fleet.connect(broker.host, broker.port)
        print(f"{len(devices)} sessions connected and subscribed in {connect_s:.1f} s "
              f"(TLS with their own certificates)", flush=True)
        echo = Echo(deployment)
        await echo.start(broker.host, broker.port)
        bare_s, bare_lat = await fleet.escrow_all()
        bare_delivered: list[float] = []
        bare_whole: list[float] = []
        for released in rounds:
            delivered_r, whole_r = await bare_release(fleet, echo, released)
            bare_delivered += delivered_r
            bare_whole += whole_r
        await echo.session.close()
        with serve(deployment, store_url, broker, workdir) as service:
            service_idle = rss_mib(service.process.pid)[0]
            pg_port = int(conninfo(store_url).split("port=")[1].split()[0])

            def cpu() -> tuple[float, float, float, float]:
                assert broker._process is not None
                return (time.perf_counter(), cpu_s([service.process.pid]),
                        cpu_s(postgres_pids(pg_port)), cpu_s([broker._process.pid]))

            before = cpu()
            escrow_s, escrow_lat = await fleet.escrow_all()
            after = cpu()
            escrow_cpu = CpuShare(*(b - a for a, b in zip(before, after, strict=True)))
            recorded: dict[str, float] = {}
            ready = asyncio.Event()
            listener = asyncio.create_task(listen_results(store_url, recorded, ready))
            try:
                await asyncio.wait_for(ready.wait(), 30)
                before = cpu()
                delivered: list[float] = []
                whole: list[float] = []
                for released in rounds:
                    approved_at, jtis = await release(service, released, principals,
                                                      court_key)
                    deadline = time.monotonic() + WAIT_S
                    while not all(j in recorded for j in jtis):
                        if time.monotonic() > deadline or listener.done():
                            raise FleetBenchError(
                                f"{sum(j in recorded for j in jtis)} of {len(jtis)} "
                                f"results recorded:\n{service.log()}")
                        await asyncio.sleep(0.01)
                    delivered += [recorded[j] - fleet.token_at[j] for j in jtis]
                    whole += [recorded[j] - approved_at for j in jtis]
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                    await listener
            after = cpu()
            release_cpu = CpuShare(*(b - a for a, b in zip(before, after, strict=True)))
            service_rss, service_peak = rss_mib(service.process.pid)
            broker_rss, broker_peak = rss_mib(broker._process.pid)
    finally:
        await fleet.close()
    report(args, figures, bare_s=bare_s, bare_lat=bare_lat, escrow_s=escrow_s,
           escrow_lat=escrow_lat,
           delivered=delivered, bare_delivered=bare_delivered, whole=whole,
           bare_whole=bare_whole, memory=(broker_idle, broker_rss, broker_peak,
                                         service_idle, service_rss, service_peak))
    figures.add(escrow_cpu.line("where the escrow phase went"))
    figures.add(release_cpu.line(f"where the release phase went ({args.rounds} rounds)"))


async def release(service: Service, devices: list[Device],
                  principals: tuple[dict[str, str], dict[str, str], str],
                  court_key: Ed25519PrivateKey) -> tuple[float, list[str]]:
    """Submit warrant requests for `devices`, 5 a request, then approve them all at once;
    (when the approvals were sent, the jtis issued)."""
    agency, reviewer, recipient = principals
    world = PolicyWorld(now=datetime.now(UTC).replace(microsecond=0),
                        court_key=court_key,
                        recipient=recipient)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        request_ids = []
        for i in range(0, len(devices), DEVICES_PER_REQUEST):
            ids = [d.device_id for d in devices[i:i + DEVICES_PER_REQUEST]]
            answer = await http.post("/v1/requests", json=world.warrant(device_ids=ids),
                                     headers=agency)
            if answer.status_code != 201:
                raise FleetBenchError(f"request refused: {answer.status_code} {answer.text}")
            request_ids.append(answer.json()["id"])
        approved_at = time.perf_counter()
        answers = await asyncio.gather(*(
            http.post(f"/v1/requests/{rid}/approve", json=REASON, headers=reviewer)
            for rid in request_ids))
    jtis: list[str] = []
    for answer in answers:
        view = answer.json()
        # The devices answer while the approval is still publishing: a request can be
        # past "released" by the time its approval returns.
        if answer.status_code != 200 or len(view.get("tokens", ())) != DEVICES_PER_REQUEST:
            raise FleetBenchError(f"approval did not release: {answer.status_code} {view}")
        jtis.extend(t["jti"] for t in view["tokens"])
    return approved_at, jtis


def report(args: argparse.Namespace, figures: Figures, *, bare_s: float,
           bare_lat: list[float], escrow_s: float, escrow_lat: list[float],
           delivered: list[float], bare_delivered: list[float],
           whole: list[float], bare_whole: list[float],
           memory: tuple[float, float, float, float, float, float]) -> None:
    n, m = args.sessions, args.released
    target_s = ESCROW_TARGET_S * n / 1000
    figures.add(f"fleet: {n} device sessions, {m} released at once, {args.rounds} rounds "
                f"pooled ({m * args.rounds} results); mosquitto (TLS, ACL), cloud-stub serve "
                "on PostgreSQL")
    figures.add(ratio_line("escrows acknowledged /s", n / escrow_s, n / bare_s, "/s",
                           f"target: {n} in < {target_s:.1f} s, took {escrow_s:.2f} s; "
                           "baseline: bare escrow round trips /s"))
    figures.add(ratio_line("escrow publish-to-ack p99", percentile(escrow_lat, 0.99) * 1e3,
                           percentile(bare_lat, 0.99) * 1e3, "ms",
                           "info; baseline: bare escrow round trip p99"))
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        figures.add(ratio_line(f"token delivered to result recorded {name}",
                               percentile(delivered, q) * 1e3,
                               percentile(bare_delivered, q) * 1e3, "ms",
                               f"{'target <= 5x; ' if q == 0.99 else ''}"
                               "baseline: bare delivered to echo"))
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        figures.add(ratio_line(f"approval to result recorded {name}",
                               percentile(whole, q) * 1e3, percentile(bare_whole, q) * 1e3,
                               "ms", "info; baseline: bare publish to echo"))
    broker_idle, broker_rss, broker_peak, service_idle, service_rss, service_peak = memory
    figures.add(ratio_line(f"broker RSS with {n} sessions", broker_rss, broker_idle, "MiB",
                           f"info: peak {broker_peak:.1f} MiB; baseline: idle broker"))
    figures.add(ratio_line("service RSS after escrows and releases", service_rss,
                           service_idle, "MiB",
                           f"info: peak {service_peak:.1f} MiB; baseline: service idle"))
    ratio = percentile(delivered, 0.99) / percentile(bare_delivered, 0.99)
    figures.ok = escrow_s < target_s and ratio <= P99_TARGET_RATIO


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000, help="device sessions")
    parser.add_argument("--released", type=int, default=100,
                        help="devices that receive a token at once (multiple of 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="releases of --released devices each, other devices each round")
    args = parser.parse_args()
    if not 0 < args.released <= args.sessions or args.released % DEVICES_PER_REQUEST:
        parser.error(f"--released must be a multiple of {DEVICES_PER_REQUEST}, 1..sessions")
    if args.rounds < 1 or args.rounds * args.released > args.sessions:
        parser.error("--rounds times --released must be 1..sessions")

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * args.sessions + 1024))  # the broker inherits it
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    figures = Figures()
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-fleet-", dir=scratch)))
        cluster = stack.enter_context(postgres_cluster())
        store_url = create_database(cluster)
        deployment = make_deployment(workdir / "dep")
        started = time.perf_counter()
        devices = make_devices(deployment, args.sessions, datetime.now(UTC))
        print(f"{args.sessions} devices enrolled with the enrolment code in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        principals = prepare_store(deployment, store_url)
        # `serve` refuses to start beside the root, court and reviewer keys (ADR 0013):
        # the court's key signs the warrants from this process's memory.
        court_key = load_court_key(deployment.layout.court_key(COURT_ID))
        deployment.move_keys_off_host()
        broker = Broker(deployment, workdir / "broker")
        broker.start()
        stack.callback(broker.close)
        asyncio.run(run(args, deployment, devices, broker, store_url, workdir, figures,
                        principals, court_key))
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
