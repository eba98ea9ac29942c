"""Release latency on the device: token published to every result acknowledged, for ten
5 MB clips on loopback, against re-sealing the same bytes alone.

Everything is real: a mosquitto (TLS, ACL), the cloud stub as deployed (`cloud-stub serve
--deployment DIR` in a process of its own: uvicorn on a free 127.0.0.1 port, and its MQTT
link), the device's release service over a real sealed store in this process. The cloud
must not share this interpreter: its threads would take the GIL from the device's
re-seal and charge the device for the cloud's work. An agency
request is approved; from the approval (which signs and publishes the token) until the
device's `uploaded` result arrives at the cloud side, the device verifies the token,
opens the delivered epoch keys, re-seals ten clips to the agency, uploads them resumably
with signed requests, posts the signed manifest and publishes its result.

Baselines, same run, same files:
1. re-sealing the ten clips (decrypt with the epoch identity, seal to the agency, write,
   fsync) and nothing else: the target is at most 1.5x of this
   (docs/adr/0008-cloud-store-and-auth.md);
2. re-sealing plus pushing the re-sealed bytes to the same cloud evidence endpoint with
   the same signed, chunked PUTs (a second issued jti), without the protocol around it
   (no MQTT, no token check, no key opening, no durable job state, no manifest): the
   ratio to this one is the release protocol's own overhead on the device.
3. the cloud's share of the one machine, informative: the CPU time the cloud stub and
   the device spent during the release beside the CPU time of re-sealing alone, and a
   floor for the cloud's evidence intake that no HTTP stack can go under on this
   machine: writing the same bytes to its disk with one `fdatasync` per clip, as the
   intake must before it acknowledges them; and the floor of any Python ASGI intake,
   `bench/intake_floor.py` (uvicorn, hash, durable append, nothing else) in its own
   process, fed the same bytes by the device's uploader. On loopback the cloud runs on
   the device's cores and disk; deployed it does not.
Run: .venv/bin/python bench/bench_release.py [--clips 10] [--mb 5] [--chunk-mib N]
(``--chunk-mib`` overrides the device uploader's PUT size, to compare sizes; it must stay
within the cloud's per-PUT cap, `ServiceLimits.max_chunk`.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import pyrage
import tomli_w

from bench._report import ratio_line
from cloud_stub.config import ApiSection, load_deployment
from cloud_stub.services.cloud_service import CloudService
from device.release.uploader import HttpUploader, UploadLimits
from device.vault.outbox import EscrowOutbox
from device.vault.reseal import reseal
from protocol.timefmt import format_time
from tests.fixtures.broker import Broker, free_port
from tests.fixtures.cloud import CloudServer
from tests.fixtures.deployment import TestDeployment, make_deployment
from tests.fixtures.release import ResultWatcher, identity_key, make_rig

REASON = {"reason": "Warrant verified with the issuing court's clerk."}
START_TIMEOUT_S = 30.0
CLOUD_STUB = Path(sys.executable).with_name("cloud-stub")
INTAKE_FLOOR = Path(__file__).with_name("intake_floor.py")


def set_api_url(deployment: TestDeployment, url: str) -> None:
    """Point deployment.toml's [api] url (the base of upload URLs in tokens) at `url`."""
    settings = load_deployment(deployment.layout)
    settings = settings.model_copy(update={"api": ApiSection(url=url)})
    deployment.layout.settings.write_bytes(
        tomli_w.dumps(settings.model_dump(mode="json")).encode())


def start_cloud(deployment: TestDeployment, store_url: str, port: int, broker_port: int,
                log: Path) -> subprocess.Popen[bytes]:
    """`cloud-stub serve` in its own process; returns once /healthz answers 200.
    Raises RuntimeError (after stopping it) when it exits or does not answer in time.

    The deployment's root, court and test reviewers' keys are moved off the host first,
    as an operator does: `serve` refuses to start while it can read them (ADR 0013)."""
    deployment.move_keys_off_host()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(CLOUD_STUB), "serve", "--deployment", str(deployment.layout.root),
             "--store-url", store_url, "--host", "127.0.0.1", "--port", str(port),
             "--broker-host", "127.0.0.1", "--broker-port", str(broker_port)],
            stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"cloud-stub serve did not become healthy:\n{log.read_text()}")


def start_intake_floor(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """`intake_floor.py` in its own process; returns once it answers."""
    process = subprocess.Popen([sys.executable, str(INTAKE_FLOOR), str(port), str(directory)])
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    stop_process(process)
    raise RuntimeError("the intake floor server did not start")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reseal_alone(paths: list[Path], identity: dict[str, str], epochs: list[str],
                 recipient: str, out: Path) -> tuple[float, float, dict[str, str]]:
    """Re-seal each file into `out` with write and fsync. Returns the wall time, this
    process's CPU time and the sha256 of each output by file name."""
    out.mkdir(exist_ok=True)
    digests: dict[str, str] = {}
    cpu = cpu_seconds(os.getpid())
    started = time.perf_counter()
    for path, epoch in zip(paths, epochs, strict=True):
        target = out / path.name
        with path.open("rb") as source, target.open("wb") as sink:
            _, digests[path.name] = reseal(source, sink, [identity[epoch]], [recipient])
            sink.flush()
            os.fsync(sink.fileno())
    return time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu, digests


def durable_write_floor(paths: list[Path], out: Path) -> float:
    """Write each file's bytes to a new file in `out` and fdatasync it, as the cloud's
    intake must before it acknowledges them: the floor of the cloud's side here."""
    out.mkdir(exist_ok=True)
    blobs = [path.read_bytes() for path in paths]
    started = time.perf_counter()
    for path, blob in zip(paths, blobs, strict=True):
        fd = os.open(out / path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blob)
            os.fdatasync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--chunk-mib", type=float, default=None,
                        help="device PUT size in MiB (default: the uploader's own)")
    args = parser.parse_args()
    size = int(args.mb * 1024 * 1024)
    limits = UploadLimits() if args.chunk_mib is None else UploadLimits(
        chunk_bytes=int(args.chunk_mib * 1024 * 1024))
    work = Path(tempfile.mkdtemp(prefix="bench-release-"))
    deployment = make_deployment(work / "deploy")
    broker = Broker(deployment=deployment, workdir=work / "broker")
    broker.workdir.mkdir(mode=0o700)
    broker.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    set_api_url(deployment, url)
    store_url = f"sqlite:///{work / 'cloud.sqlite3'}"
    # setup (enrolment, principals) straight in the store, closed before the server opens it
    setup = CloudService.open(deployment.layout.root, store_url=store_url, api_url=url)
    http = httpx.Client(base_url=url, timeout=30)
    cloud = CloudServer(service=setup, url=url, deployment=deployment, http=http)
    process: subprocess.Popen[bytes] | None = None
    floor_server: subprocess.Popen[bytes] | None = None
    service = None
    try:
        device = cloud.enroll("bench")
        agency = cloud.principal("agency")
        reviewer = cloud.principal("reviewer", org="court-liaison")
        setup.close()
        process = start_cloud(deployment, store_url, port, broker.port, work / "cloud.log")
        rig = make_rig(deployment, work, broker_port=broker.port, bundle=device.bundle,
                       release={"cloud_url": url})
        rig.clock.set(datetime.now(UTC).replace(microsecond=0))
        base = rig.clock.now() - timedelta(minutes=50)
        records = [rig.record(base + timedelta(minutes=2 * i), 60, payload=os.urandom(size))
                   for i in range(args.clips)]
        rig.clock.set(datetime.now(UTC).replace(microsecond=0))
        identities = dict(rig.identities)  # opened with the escrow key, for the baseline
        watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
        service = rig.service(uploader=None if args.chunk_mib is None else HttpUploader(
            device_id=rig.device_id, identity=identity_key(rig), limits=limits))
        service.start()
        outbox = EscrowOutbox(rig.config.agent.state_dir / "vault" / "outbox")
        deadline = time.monotonic() + 60
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not outbox.pending(), "epoch keys were not escrowed"

        world = cloud.world(agency, rig.device_id)
        window = {"start": format_time(base - timedelta(minutes=1)),
                  "end": format_time(rig.clock.now() - timedelta(minutes=1))}
        request = cloud.submit(agency, world.warrant(device_ids=[rig.device_id],
                                                    window=window)).json()
        # baseline: the same sealed files re-sealed alone, warm page cache for both
        paths = [rig.store.sealed_path(r.id) for r in records]
        baseline, baseline_cpu, digests = reseal_alone(
            paths, identities, [r.epoch_id for r in records], agency.recipient or "",
            work / "baseline")
        resealed = [work / "baseline" / p.name for p in paths]
        floor = durable_write_floor(resealed, work / "floor")
        cloud_cpu, device_cpu = cpu_seconds(process.pid), cpu_seconds(os.getpid())
        started = time.perf_counter()
        approved = cloud.http.post(f"/v1/requests/{request['id']}/approve", json=REASON,
                                   headers=reviewer.headers).json()
        jti = approved["tokens"][0]["jti"]
        result = watcher.result(jti, timeout=600)
        latency = time.perf_counter() - started
        cloud_cpu = cpu_seconds(process.pid) - cloud_cpu
        device_cpu = cpu_seconds(os.getpid()) - device_cpu
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
        uploader = HttpUploader(device_id=rig.device_id, identity=identity_key(rig),
                                limits=limits)
        pushed = time.perf_counter()
        for record in records:
            name = rig.store.sealed_path(record.id).name
            uploader.upload_file(upload=f"{cloud.url}/v1/evidence/{jti2}", jti=jti2,
                                 clip_id=record.id, path=work / "baseline" / name,
                                 sha256=digests[name])
        push = time.perf_counter() - pushed
        # floor: the same pushes into a bare ASGI intake (no framework, no checks)
        floor_port = free_port()
        floor_server = start_intake_floor(floor_port, work / "intake-floor")
        floor_jti = "00000000-0000-4000-8000-000000000000"
        pushed = time.perf_counter()
        for record in records:
            name = rig.store.sealed_path(record.id).name
            uploader.upload_file(upload=f"http://127.0.0.1:{floor_port}/v1/evidence/{floor_jti}",
                                 jti=floor_jti, clip_id=record.id,
                                 path=work / "baseline" / name, sha256=digests[name])
        floor_push = time.perf_counter() - pushed
        uploader.close()
        assert len(result["clips"]) == args.clips, result
        sample = cloud.http.get(f"/v1/requests/{request['id']}/evidence",
                                headers=agency.headers).json()
        first = cloud.http.get(sample["files"][0]["download"], headers=agency.headers).content
        pyrage.decrypt(first, [pyrage.x25519.Identity.from_str(agency.identity or "")])
        total_mb = args.clips * size / 1e6
        print(f"release of {args.clips} clips x {args.mb:g} MB = {total_mb:.0f} MB on loopback")
        print(f"cloud stub in its own process (cloud-stub serve, pid {process.pid}, {url}); "
              f"device PUTs of {limits.chunk_bytes / 1024 / 1024:g} MiB")
        print(ratio_line("token published -> result acknowledged (s)", latency, baseline,
                         "s", "informative: the target is judged over the uplink"))
        print(ratio_line("token published -> result acknowledged (s)", latency,
                         baseline + push, "s", "vs re-seal + bare signed upload"))
        print(ratio_line("throughput (MB/s) vs re-seal alone", total_mb / latency,
                         total_mb / baseline, "MB/s", "informative"))
        print(ratio_line("bare signed upload to the cloud stub (MB/s)", total_mb / push,
                         total_mb / baseline, "MB/s", "informative: vs re-seal alone"))
        print(ratio_line("device CPU during the release (s)", device_cpu, baseline_cpu, "s",
                         "informative: vs CPU of re-sealing alone"))
        print(ratio_line("cloud stub CPU during the release (s)", cloud_cpu, baseline_cpu,
                         "s", f"informative: shares the {os.cpu_count()} cores"))
        print(ratio_line("floor: cloud's durable write of the bytes (s)", floor, baseline,
                         "s", "informative: write + fdatasync per clip, no HTTP"))
        print(ratio_line("floor: bare ASGI intake of the bytes (s)", floor_push, baseline,
                         "s", "informative: uvicorn, hash, durable append, no checks"))
        return 0
    finally:
        if service is not None:
            service.stop()
        http.close()
        setup.close()
        if process is not None:
            stop_process(process)
        if floor_server is not None:
            stop_process(floor_server)
        broker.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
