"""A fleet on one broker: 1,000 device sessions escrow an epoch key each, then 100 of
them receive tokens at once and answer each with a result.

Everything is real: devices enrolled with the deployment's code (each its own client
certificate), one mosquitto with the deployment's TLS and ACL, the cloud stub as
deployed (`cloud-stub serve`) on PostgreSQL (tests/fixtures/postgres.py's cluster),
approvals over HTTP. The devices are light protocol clients (one paho session each,
TLS with the device's own key), not agents: each publishes a real escrow message (an
age identity sealed to the deployment's escrow recipient) and answers a token with a
`rejected` result naming its jti, which the cloud records.

Figures, each beside a baseline of the same run:
1. escrows acknowledged per second: from the first escrow published to the last
   `escrow-ack` received, for all sessions at once; target all 1,000 in under 10 s.
2. publish-to-result p50 / p99 for the 100 tokens (20 requests of 5 devices, the
   policy's cap per warrant, approved at once), from the token's arrival at the device
   session to its result's arrival at a spy with the cloud's certificate (the ACL lets
   the cloud write `release` topics, not read them, so the publish is observed where
   it lands); against the same measure for a bare ping (the spy publishes on a device's
   `release` topic, the device answers on `result`) with the same sessions connected,
   and the ping's whole round trip. Target p99 at most 5x the bare p99.
3. the broker's and the cloud stub's resident memory with every session connected.

Run: .venv/bin/python bench/bench_fleet.py [--devices 1000] [--tokens 100]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import resource
import select
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pyrage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench._report import ratio_line
from bench.bench_release import REASON, free_port, set_api_url, start_cloud, stop_process
from cloud_stub.provision.deployment import write_broker_acl
from cloud_stub.service import CloudService
from protocol.messages import EscrowMessage
from protocol.timefmt import format_time
from protocol.topics import DeviceTopics
from tests.fixtures import postgres
from tests.fixtures.broker import Broker, tls_context
from tests.fixtures.cloud import CloudServer
from tests.fixtures.deployment import TestDeployment, make_deployment

PER_REQUEST = 5  # the policy's cap of devices per warrant
CONNECT_BATCH = 25  # sessions started at once while the fleet connects
CONNECT_TIMEOUT_S = 60.0
RECEIVED: dict[str, float] = {}  # jti -> when a device session received it
RECEIVED_LOCK = threading.Lock()
MiB = 1024 * 1024


class PollSelect:
    """`select.select` on poll(2), for paho in this process.

    paho's network loop calls `select.select`, which refuses descriptors above 1023
    (FD_SETSIZE); a session holds three (its socket and paho's wake-up pair), so one
    process could not hold more than about 340 sessions. This stands in for paho's
    `select` module only, in this benchmark; it answers the same lists.
    """

    error = OSError

    @staticmethod
    def select(readers: list[Any], writers: list[Any], _errors: list[Any],
               timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
        poller = select.poll()
        by_fd: dict[int, Any] = {}
        for obj, mask in [(r, select.POLLIN | select.POLLPRI) for r in readers] + [
                (w, select.POLLOUT) for w in writers]:
            if obj is None:  # paho's closed socket: it expects a TypeError then
                raise TypeError("no socket")
            fd = obj if isinstance(obj, int) else obj.fileno()
            by_fd[fd] = obj
            poller.register(fd, mask)
        ready = poller.poll(None if timeout is None else timeout * 1000)
        readable = [by_fd[fd] for fd, ev in ready
                    if ev & (select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR)
                    and by_fd[fd] in readers]
        writable = [by_fd[fd] for fd, ev in ready if ev & select.POLLOUT and by_fd[fd] in writers]
        return readable, writable, []


mqtt.select = PollSelect  # type: ignore[assignment,attr-defined]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """The tests' PostgreSQL cluster (tests/fixtures/postgres.py), outside pytest."""
    definition = postgres.postgres_url
    function = getattr(definition, "__wrapped__", None) or getattr(
        definition, "_get_wrapped_function", lambda: definition)()
    generator = function()
    url = next(generator)
    try:
        yield url
    finally:
        with contextlib.suppress(StopIteration):
            next(generator)


def new_database(cluster_url: str) -> str:
    """A fresh database in the cluster, as tests/fixtures/postgres.py makes one."""
    name = f"fleet_{os.urandom(6).hex()}"
    port = cluster_url.rsplit(":", 1)[1].split("/")[0]
    with psycopg.connect(f"host={postgres.HOST} port={port} user={postgres.SUPERUSER} "
                         "dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster_url.rsplit("/", 1)[0] + f"/{name}"


class Session:
    """One light device: a paho session with the device's own certificate."""

    def __init__(self, deployment: TestDeployment, device_id: str, broker: Broker) -> None:
        self.device_id = device_id
        self.topics = DeviceTopics(device_id, deployment.prefix)
        creds = deployment.credentials(device_id)
        self.acked = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-fleet",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.tls_set_context(tls_context(creds, creds.ca_cert))
        self.client.on_message = self._message
        self.connected = threading.Event()
        self.trouble: object = "no answer"
        self.client.on_connect = lambda *_a: self._subscribe()
        self.client.on_connect_fail = lambda *_a: setattr(self, "trouble", "connect failed")
        self.client.on_disconnect = lambda _c, _u, _f, reason, _p: setattr(
            self, "trouble", reason)
        self.client.connect_async(broker.host, broker.port, keepalive=60)
        self.client.loop_start()

    def _subscribe(self) -> None:
        self.client.subscribe([(self.topics.release, 1), (self.topics.escrow_ack, 1)])
        self.connected.set()

    def _message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.topics.escrow_ack:
            self.acked.set()
        elif message.topic == self.topics.release:
            received = time.perf_counter()
            jti = self._answer(bytes(message.payload))
            with RECEIVED_LOCK:
                RECEIVED.setdefault(jti, received)

    def _answer(self, token: bytes) -> str:
        jti = token_jti(token)
        result = {"v": 1, "jti": jti, "status": "rejected", "reason": "fleet_bench",
                  "detail": "a light protocol client answers every token", "clips": []}
        self.client.publish(self.topics.result, json.dumps(result).encode(), qos=1)
        return jti

    def escrow(self, payload: bytes) -> None:
        self.client.publish(self.topics.escrow, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def token_jti(token: bytes) -> str:
    """The jti of a token, or of the spy's bare ping (`{"jti": ...}`), unverified: the
    light client only has to name what it answers."""
    text = token.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict) and "jti" in body:
            return str(body["jti"])
        if isinstance(body, dict) and "payload" in body:  # JWS JSON serialization
            text = f"x.{body['payload']}.x"
    payload = text.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


class Spy:
    """The cloud's certificate, watching every release and result pass the broker."""

    def __init__(self, broker: Broker, prefix: str) -> None:
        self.prefix = prefix
        self.seen_result: dict[str, float] = {}
        self.lock = threading.Lock()
        self.client = broker.client("cloud")
        self.client.on_message = self._message
        self.client.subscribe(f"{prefix}/+/result", qos=1)

    def _message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        try:
            jti = token_jti(bytes(message.payload))
        except (ValueError, KeyError, IndexError):
            return
        with self.lock:
            self.seen_result.setdefault(jti, now)

    def wait_results(self, jtis: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(j in self.seen_result for j in jtis):
                    return
            time.sleep(0.01)
        raise SystemExit(f"results missing after {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def enroll_all(deployment: TestDeployment, count: int) -> list[str]:
    """Enrol `count` devices (eight at a time: enrolment waits on fsync), then render
    the ACL once more so it names every owner."""
    ids = [deployment.new_device_id("fleet") for _ in range(count)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(deployment.enroll_device, ids))
    write_broker_acl(deployment.layout, deployment.prefix)
    return ids


def escrow_payload(deployment: TestDeployment, device_id: str, start: datetime) -> bytes:
    escrow = pyrage.x25519.Recipient.from_str(
        deployment.layout.escrow_recipient.read_text().strip())
    epoch = pyrage.x25519.Identity.generate()
    sealed = pyrage.encrypt(f"{epoch}\n".encode(), [escrow])
    return EscrowMessage(
        device=device_id, epoch=f"{int(start.timestamp())}-{os.urandom(4).hex()}",
        start=start, end=start + timedelta(hours=2), recipient=str(epoch.to_public()),
        sealed=base64.b64encode(sealed).decode("ascii"),
    ).to_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args()
    # a socket per session here and in mosquitto (which inherits the limit)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * args.devices + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    sessions: list[Session] = []
    process = None
    broker: Broker | None = None
    http: httpx.Client | None = None
    try:
        with postgres_cluster() as cluster:
            store_url = new_database(cluster)
            deployment = make_deployment(work / "deploy")
            began = time.monotonic()
            ids = enroll_all(deployment, args.devices)
            print(f"  enrolled {len(ids)} devices in {time.monotonic() - began:.0f} s",
                  flush=True)
            broker = Broker(deployment=deployment, workdir=work / "broker")
            broker.workdir.mkdir(mode=0o700)
            broker.start()
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            set_api_url(deployment, url)
            setup = CloudService.open(deployment.layout.root, store_url=store_url, api_url=url)
            http = httpx.Client(base_url=url, timeout=60)
            cloud = CloudServer(service=setup, url=url, deployment=deployment, http=http)
            setup.core.sync_devices()
            agency = cloud.principal("agency")
            reviewer = cloud.principal("reviewer", org="court-liaison")
            setup.close()
            process = start_cloud(deployment, store_url, port, broker.port, work / "cloud.log")
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
            assert broker._process is not None
            idle_broker, idle_cloud = rss_mib(broker._process.pid), rss_mib(process.pid)
            began = time.monotonic()
            failed: list[Session] = []
            for first in range(0, len(ids), CONNECT_BATCH):  # not a TLS storm on 2 cores
                if len(failed) >= CONNECT_BATCH:
                    break  # the broker or this machine is saturated: judge what connected
                batch = [Session(deployment, d, broker) for d in ids[first:first + CONNECT_BATCH]]
                for session in batch:
                    (sessions if session.connected.wait(CONNECT_TIMEOUT_S) else failed).append(
                        session)
            if failed:  # judged below; the rest of the fleet still runs
                reasons = Counter(str(s.trouble) for s in failed)
                print(f"  {len(failed)} sessions did not connect in {CONNECT_TIMEOUT_S:g} s: "
                      f"{dict(reasons.most_common(3))}", flush=True)
                for session in failed:
                    with contextlib.suppress(Exception):
                        session.close()
            ids = [s.device_id for s in sessions]
            payloads = [escrow_payload(deployment, d, start) for d in ids]
            print(f"  {len(sessions)} sessions connected in {time.monotonic() - began:.0f} s",
                  flush=True)
            spy = Spy(broker, deployment.prefix)
            # a second client with the cloud's certificate publishes the pings: one that
            # publishes and subscribes would see its deliveries held by Nagle's algorithm
            # behind its own PUBACKs (mosquitto does not set TCP_NODELAY by default)
            pinger = broker.client("cloud")

            began = time.perf_counter()
            for session, payload in zip(sessions, payloads, strict=True):
                session.escrow(payload)
            for session in sessions:
                if not session.acked.wait(300):
                    raise SystemExit(f"{session.device_id}: escrow not acknowledged")
            escrow_s = time.perf_counter() - began

            # bare: the spy (the cloud's certificate) pings devices on `release`, they
            # answer on `result`; the same measure as for tokens (device receipt to the
            # result at the cloud's side) and the whole round trip
            bare: list[float] = []
            round_trip: list[float] = []
            for session in sessions[: args.tokens]:
                jti = f"ping-{os.urandom(6).hex()}"
                sent = time.perf_counter()
                pinger.publish(session.topics.release, json.dumps({"jti": jti}).encode(),
                                   qos=1)
                spy.wait_results([jti], 30)
                bare.append(spy.seen_result[jti] - RECEIVED[jti])
                round_trip.append(spy.seen_result[jti] - sent)

            chosen = ids[: args.tokens]
            world = cloud.world(agency, chosen[0])
            window = {"start": format_time(start + timedelta(minutes=5)),
                      "end": format_time(start + timedelta(minutes=50))}
            requests = [cloud.submit(agency, world.warrant(
                device_ids=chosen[i : i + PER_REQUEST], window=window)).json()
                for i in range(0, len(chosen), PER_REQUEST)]

            def approve(request: dict[str, object]) -> list[str]:
                with httpx.Client(base_url=url, timeout=120) as client:
                    answer = client.post(f"/v1/requests/{request['id']}/approve",
                                         json=REASON, headers=reviewer.headers).json()
                return [t["jti"] for t in answer["tokens"]]

            with ThreadPoolExecutor(max_workers=len(requests)) as pool:
                jtis = [j for batch in pool.map(approve, requests) for j in batch]
            assert len(jtis) == args.tokens, jtis
            spy.wait_results(jtis, 120)
            latencies = [spy.seen_result[j] - RECEIVED[j] for j in jtis]
            broker_rss, cloud_rss = rss_mib(broker._process.pid), rss_mib(process.pid)

        print(f"fleet: {args.devices} device sessions (TLS, own certificates, deployment ACL), "
              f"cloud stub on PostgreSQL; tokens to {args.tokens} at once")
        print(ratio_line("device sessions connected", len(ids), args.devices, "", "target 1.00"))
        print(ratio_line("escrows acknowledged per second", len(ids) / escrow_s,
                         args.devices / 10.0, "1/s",
                         f"target >= 1.00: {len(ids)} in {escrow_s:.1f} s; all {args.devices}"
                         " under 10 s"))
        print(ratio_line("token at device -> result at cloud, p50 (ms)",
                         1000 * statistics.median(latencies), 1000 * statistics.median(bare),
                         "ms", "vs the same for a bare ping, p50"))
        print(ratio_line("token at device -> result at cloud, p99 (ms)",
                         1000 * percentile(latencies, 0.99), 1000 * percentile(bare, 0.99),
                         "ms", "target <= 5x the bare ping's p99"))
        print(ratio_line("token at device -> result at cloud, p99 (ms)",
                         1000 * percentile(latencies, 0.99), 1000 * percentile(round_trip, 0.99),
                         "ms", "informative: vs the bare whole round trip p99"))
        print(ratio_line(f"broker RSS, {args.devices} sessions (MiB)", broker_rss, idle_broker,
                         "MiB", "informative: vs the broker with no session"))
        print(ratio_line("cloud stub RSS after escrows and tokens (MiB)", cloud_rss, idle_cloud,
                         "MiB", "informative: vs the cloud stub before the sessions"))
        return 0
    finally:
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()
        if http is not None:
            http.close()
        if process is not None:
            stop_process(process)
        if broker is not None:
            broker.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
