"""Release latency on the device: token published to every result acknowledged, for ten
5 MB clips on loopback, against re-sealing the same bytes alone.

Everything is real: a mosquitto (TLS, ACL), the cloud stub over HTTP (uvicorn on
127.0.0.1) and MQTT, the device's release service over a real sealed store. An agency
request is approved; from the approval (which signs and publishes the token) until the
device's `uploaded` result arrives at the cloud side, the device verifies the token,
opens the delivered epoch keys, re-seals ten clips to the agency, uploads them resumably
with signed requests, posts the signed manifest and publishes its result.

Baselines, same run, same files:
1. re-sealing the ten clips (decrypt with the epoch identity, seal to the agency, write,
   fsync) and nothing else: the issue's target is at most 1.5x of this;
2. re-sealing plus pushing the re-sealed bytes to the same cloud evidence endpoint with
   the same signed, chunked PUTs (a second issued jti), without the protocol around it
   (no MQTT, no token check, no key opening, no durable job state, no manifest): the
   ratio to this one is the release protocol's own overhead on the device.
Run: .venv/bin/python bench/bench_release.py [--clips 10] [--mb 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyrage

from bench._report import ratio_line
from cloud_stub.mqtt import CloudMqtt, MqttOptions
from device.release.uploader import HttpUploader
from device.vault.outbox import EscrowOutbox
from device.vault.reseal import reseal
from protocol.timefmt import format_time
from tests.fixtures.broker import Broker
from tests.fixtures.cloud import open_cloud
from tests.fixtures.deployment import make_deployment
from tests.fixtures.release import ResultWatcher, identity_key, make_rig

REASON = {"reason": "Warrant verified with the issuing court's clerk."}


def reseal_alone(paths: list[Path], identity: dict[str, str], epochs: list[str],
                 recipient: str, out: Path) -> float:
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    for path, epoch in zip(paths, epochs, strict=True):
        target = out / path.name
        with path.open("rb") as source, target.open("wb") as sink:
            reseal(source, sink, [identity[epoch]], [recipient])
            sink.flush()
            os.fsync(sink.fileno())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--mb", type=float, default=5.0)
    args = parser.parse_args()
    size = int(args.mb * 1024 * 1024)
    work = Path(tempfile.mkdtemp(prefix="bench-release-"))
    deployment = make_deployment(work / "deploy")
    broker = Broker(deployment=deployment, workdir=work / "broker")
    broker.workdir.mkdir(mode=0o700)
    broker.start()
    clouds = open_cloud(deployment, work)
    cloud = next(clouds)
    link = CloudMqtt(cloud.service, MqttOptions.from_service(
        cloud.service, host=broker.host, port=broker.port))
    service = None
    try:
        assert link.start(), "cloud stub did not connect to the broker"
        device = cloud.enroll("bench")
        rig = make_rig(deployment, work, broker_port=broker.port, bundle=device.bundle,
                       release={"cloud_url": cloud.url})
        rig.clock.set(datetime.now(UTC).replace(microsecond=0))
        base = rig.clock.now() - timedelta(minutes=50)
        records = [rig.record(base + timedelta(minutes=2 * i), 60, payload=os.urandom(size))
                   for i in range(args.clips)]
        rig.clock.set(datetime.now(UTC).replace(microsecond=0))
        identities = dict(rig.identities)  # opened with the escrow key, for the baseline
        watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
        service = rig.service()
        service.start()
        outbox = EscrowOutbox(rig.config.agent.state_dir / "vault" / "outbox")
        deadline = time.monotonic() + 60
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not outbox.pending(), "epoch keys were not escrowed"

        agency = cloud.principal("agency")
        reviewer = cloud.principal("reviewer", org="court-liaison")
        world = cloud.world(agency, rig.device_id)
        window = {"start": format_time(base - timedelta(minutes=1)),
                  "end": format_time(rig.clock.now() - timedelta(minutes=1))}
        request = cloud.submit(agency, world.warrant(device_ids=[rig.device_id],
                                                    window=window)).json()
        # baseline: the same sealed files re-sealed alone, warm page cache for both
        paths = [rig.store.sealed_path(r.id) for r in records]
        baseline = reseal_alone(paths, identities, [r.epoch_id for r in records],
                                agency.recipient or "", work / "baseline")
        started = time.perf_counter()
        approved = cloud.http.post(f"/v1/requests/{request['id']}/approve", json=REASON,
                                   headers=reviewer.headers).json()
        jti = approved["tokens"][0]["jti"]
        result = watcher.result(jti, timeout=600)
        latency = time.perf_counter() - started
        assert result["status"] == "uploaded", result
        if os.environ.get("BENCH_AUDIT"):
            print(service.layout.audit_log.read_text())
        service.stop()
        service = None
        # baseline 2: the same re-sealed bytes pushed with the same signed PUTs
        second = cloud.submit(agency, world.warrant(device_ids=[rig.device_id],
                                                   window=window)).json()
        approved2 = cloud.http.post(f"/v1/requests/{second['id']}/approve", json=REASON,
                                    headers=reviewer.headers).json()
        jti2 = approved2["tokens"][0]["jti"]
        uploader = HttpUploader(device_id=rig.device_id, identity=identity_key(rig))
        pushed = time.perf_counter()
        for record in records:
            uploader.upload_file(upload=f"{cloud.url}/v1/evidence/{jti2}", jti=jti2,
                                 clip_id=record.id,
                                 path=work / "baseline" / rig.store.sealed_path(record.id).name)
        push = time.perf_counter() - pushed
        uploader.close()
        assert len(result["clips"]) == args.clips, result
        sample = cloud.http.get(f"/v1/requests/{request['id']}/evidence",
                                headers=agency.headers).json()
        first = cloud.http.get(sample["files"][0]["download"], headers=agency.headers).content
        pyrage.decrypt(first, [pyrage.x25519.Identity.from_str(agency.identity or "")])
        total_mb = args.clips * size / 1e6
        print(f"release of {args.clips} clips x {args.mb:g} MB = {total_mb:.0f} MB on loopback")
        print(ratio_line("token published -> result acknowledged (s)", latency, baseline,
                         "s", "target <= 1.5x re-sealing alone"))
        print(ratio_line("token published -> result acknowledged (s)", latency,
                         baseline + push, "s", "vs re-seal + bare signed upload"))
        print(ratio_line("throughput (MB/s) vs re-seal alone", total_mb / latency,
                         total_mb / baseline, "MB/s", "informative"))
        print(ratio_line("bare signed upload to the cloud stub (MB/s)", total_mb / push,
                         total_mb / baseline, "MB/s", "informative: vs re-seal alone"))
        return 0
    finally:
        if service is not None:
            service.stop()
        link.stop()
        next(clouds, None)
        broker.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
