"""The cloud stub end to end on loopback, against bare threshold signing of the same tokens.

Each request goes through real HTTP (uvicorn on 127.0.0.1), the legal check (a
court-signed warrant), the store (SQLite, WAL), review (one approval), escrow (one epoch
key opened and sealed to the device), threshold signing (policy + review keys) and a
QoS 1 publish to a real mosquitto (TLS, ACL) whose PUBACK the approval waits for; a
device client counts the tokens it receives. Figures:

1. requests checked, approved, signed and published per second, against bare signing
   (`sign_token` + `add_signature` of the same claims) per second;
2. p50 and p99 latency of submit + approve, against the bare signing latency.

The ratio says what the service costs over the cryptography it cannot avoid (HTTP round
trips, a dozen durable SQLite transactions, the broker's PUBACK). The target follows the
workload: every release waits for a human reviewer, so requests arrive a few a minute;
>= 2 requests/s end to end (p99 under a second) leaves two orders of magnitude of room.
Run: .venv/bin/python bench/bench_cloud.py [--n 60]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from bench._report import ratio_line
from cloud_stub.mqtt import CloudMqtt, MqttOptions
from cloud_stub.store.models import Token
from protocol.token import ReleaseClaims, add_signature, sign_token
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, subscribe
from tests.fixtures.cloud import open_cloud
from tests.fixtures.deployment import make_deployment

REASON = {"reason": "Warrant verified with the issuing court's clerk."}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def bare_signing(claims: list[ReleaseClaims], policy: Any, review: Any
                 ) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for c in claims:
        t0 = time.perf_counter()
        add_signature(sign_token(c, [policy]), review)
        latencies.append(time.perf_counter() - t0)
    return len(claims) / (time.perf_counter() - started), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=60, help="requests to submit and approve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        base = Path(tmp)
        deployment = make_deployment(base / "dep")
        broker = Broker(deployment, base / "broker")
        broker.start()
        try:
            for cloud in open_cloud(deployment, base):
                link = CloudMqtt(cloud.service, MqttOptions.from_service(
                    cloud.service, host=broker.host, port=broker.port))
                if not link.start():
                    raise SystemExit(f"the cloud did not connect:\n{broker.log()}")
                try:
                    return run(cloud, broker, link, args.n)
                finally:
                    link.stop()
        finally:
            broker.close()
    return 1


def run(cloud: Any, broker: Broker, link: CloudMqtt, n: int) -> int:
    device = cloud.enroll("bench")
    received = threading.Semaphore(0)
    client = broker.client(device.device_id)
    client.on_message = lambda *_a: received.release()
    subscribe(client, DeviceTopics(device.device_id, cloud.deployment.prefix).release)
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    agency = cloud.principal("agency", org="metro-pd")
    reviewer = cloud.principal("reviewer", org="legal")
    body = cloud.world(agency, device.device_id).warrant(device_ids=[device.device_id])
    http = cloud.http
    # Warm up the connection pool, the policy and the store.
    for _ in range(3):
        rid = http.post("/v1/requests", json=body, headers=agency.headers).json()["id"]
        http.post(f"/v1/requests/{rid}/approve", json=REASON, headers=reviewer.headers)
        received.acquire(timeout=10)
    latencies: list[float] = []
    request_ids: list[str] = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        submitted = http.post("/v1/requests", json=body, headers=agency.headers)
        rid = submitted.json()["id"]
        view = http.post(f"/v1/requests/{rid}/approve", json=REASON,
                         headers=reviewer.headers).json()
        latencies.append(time.perf_counter() - t0)
        if view["status"] != "released" or view["tokens"][0]["status"] != "published":
            raise SystemExit(f"request {rid} was not released and published: {view}")
        request_ids.append(rid)
    for _ in range(n):
        if not received.acquire(timeout=30):
            raise SystemExit("the device did not receive every token")
    elapsed = time.perf_counter() - started
    rate = n / elapsed

    with cloud.service.store.transaction() as session:
        tokens = session.execute(
            select(Token.jws).where(Token.request_id.in_(request_ids))).scalars().all()
    claims = []
    for jws in tokens:
        payload = json.loads(base64.urlsafe_b64decode(json.loads(jws)["payload"] + "=="))
        claims.append(ReleaseClaims.from_payload(payload))
    signer = cloud.service.signer
    bare_rate, bare_latencies = max(
        (bare_signing(claims, signer.policy_key, signer.review_key) for _ in range(3)),
        key=lambda r: r[0])

    print(f"cloud stub end to end, {n} warrant requests, one device, real HTTP + mosquitto")
    print(ratio_line("requests checked+approved+signed+published /s", rate, bare_rate,
                     "req/s", "target >= 2 req/s; baseline: bare threshold signing"))
    print(ratio_line("p50 latency submit+approve+publish", statistics.median(latencies) * 1e3,
                     statistics.median(bare_latencies) * 1e3, "ms",
                     "baseline: bare signing of the same token"))
    print(ratio_line("p99 latency submit+approve+publish", percentile(latencies, 0.99) * 1e3,
                     percentile(bare_latencies, 0.99) * 1e3, "ms",
                     "baseline: bare signing of the same token"))
    return 0 if rate >= 2 and percentile(latencies, 0.99) < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
