"""Release over a real uplink: ten 5 MB clips from a device whose network is a shaped
20 Mbit/s link with 40 ms of round-trip latency, against what that link allows.

The device (its release service over a real sealed store, in this process, with the
deployed timing and MQTT keepalive, not the tests' shorter ones) runs in a
network namespace of its own; mosquitto (TLS, ACL) and the cloud stub as deployed
(`cloud-stub serve`) run in a second one. A veth pair joins them (bench/netns.py); the
device side's egress is shaped by `tc ... tbf` to 20 Mbit/s. netem is not available
here, so the latency is added by bench/delay_proxy.py on the service's side of the
link: the device connects straight to the service's address over the veth, as a
doorbell's connections leave by its uplink, and a forwarder there delays every byte
by 20 ms each way (MQTT and HTTP) and hands the connections on to the loopback the
services listen on. (`--delay-side device` runs the former topology for comparison:
delay proxies on the device's loopback, the device connecting to them, and plain
forwarders on the service's side. There the device's sockets ended on its own
loopback, and the kernel ran the proxy's receiving TCP in the sending thread.) The
broker's certificate names the service's address beside localhost.

From the approval (which signs and publishes the token) until the device's `uploaded`
result reaches a subscriber beside the broker, the device verifies the token, opens
the epoch keys, re-seals the ten clips, uploads them, posts the manifest and
publishes its result, all through the shaped link.

Figures, each beside its baseline from the same run. The release is run `--releases`
times (3) with the same clips, each time after three re-seals alone; the figures are
the medians, and each release's own is printed first:
1. latency against the link's bound for the same bytes: the bytes the shaper carried
   up during the release (payload, HTTP, TLS, MQTT, TCP/IP) at the shaped rate, plus
   the round trips the protocol needs in series (`ROUND_TRIPS`: the token's way down,
   the TCP connect to the cloud, the answer to the last PUT, the manifest, the
   result's way up). Target at most 1.10x.
2. the same release again (a second request and token) with the forwarder on the
   service's side resetting an upload connection once, when half a clip has crossed
   the link on it since SIGUSR1 armed the cut; against the same bound. Target at most
   1.25x.
3. the device's CPU time per released MB against re-sealing the same clips alone
   (decrypt, seal to the agency, write, fsync). Target at most 1.3x.
   Counted for the device: the CPU of this process (user + system, nanosecond clocks)
   from just before the approval until its result arrives, minus the CPU of the
   benchmark's own two threads over the same interval, each read from its own thread
   CPU clock (bench/_cpu.py): the main thread (it posts the approval with httpx, reads
   the shaper's counters and waits) and the ResultWatcher's paho thread (it receives the
   result beside the broker). What is left is the device's threads: the release
   service's intake and job threads, its upload workers and its MQTT link's network
   thread (no other thread runs in this process; the breakdown by thread names them).
   Not counted: the broker, the cloud stub and the delay proxies (processes of their
   own), and the kernel's work outside this process (writeback, the shaper, softirqs
   charged to other tasks). The baseline is the CPU of the thread that re-seals alone
   (the main thread, nothing else running in it), over the same files with a warm page
   cache: the median of all the re-seals (three before each release), against the
   median of the releases, since one re-seal's CPU and one release's vary by a fifth
   from run to run on a shared machine. Each release's line compares it with the three
   re-seals just before it. The former figure, the whole process's CPU against the
   whole process's during the re-seal, is printed beside it as information.
The loopback figures stay in bench/bench_release.py (information).

Needs root (network namespaces, tc) and iproute2. Creates only its own two namespaces
and deletes them at the end, also on failure.
Run: .venv/bin/python bench/bench_release_uplink.py [--clips 10] [--mb 5] [--mbit 20]
     [--releases 3] [--delay-side service|device]   (about 100 s with the defaults)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._cpu import ENDED, CpuSample, CpuSplit
from bench._report import ratio_line
from bench.bench_release import (
    REASON,
    reseal_alone,
    set_api_url,
    start_cloud,
    stop_process,
)
from bench.netns import SVC_ADDRESS, ShapedLink
from cloud_stub.services.cloud_service import CloudService
from device.config import MqttSettings
from device.malloc import no_huge_pages, tune_malloc
from device.release.service import ReleaseService, ServiceTiming
from device.release.vaultview import StoreVault
from device.vault.outbox import EscrowOutbox
from protocol.timefmt import format_time
from tests.fixtures.broker import Broker, free_port
from tests.fixtures.cloud import CloudServer
from tests.fixtures.deployment import make_deployment
from tests.fixtures.release import ResultWatcher, make_rig

DELAY_PROXY = Path(__file__).with_name("delay_proxy.py")
RESULT_TIMEOUT_S = 300.0
RESEALS_PER_RELEASE = 3  # re-seals alone timed just before each release (the baseline)
ROUND_TRIPS = 4.0  # token down 0.5, TCP connect 1, last PUT's answer 1, manifest 1, result up 0.5


class Proxy:
    """One bench/delay_proxy.py process (started in the calling thread's namespace)."""

    def __init__(self, listen: str, to: str, *, delay_ms: float,
                 cut_after: int | None = None) -> None:
        command = [sys.executable, str(DELAY_PROXY), "--listen", listen, "--to", to,
                   "--delay-ms", str(delay_ms)]
        if cut_after is not None:
            command += ["--cut-after", str(cut_after)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline().split()
        if line[:1] != ["ready"]:
            stop_process(self.process)  # type: ignore[arg-type]
            raise RuntimeError(f"delay proxy did not start: {line}")
        self.port = int(line[1])

    def arm_cut(self) -> None:
        self.process.send_signal(signal.SIGUSR1)

    def cut_report(self) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        return stdout.readline().strip()

    def stop(self) -> None:
        stop_process(self.process)  # type: ignore[arg-type]


def short_name(name: str) -> str:
    """A thread's name for the report (paho's network thread names its client id; the
    upload workers are a pool of the job's own, ended when it is)."""
    if name == ENDED:
        return "upload workers (threads that ended)"
    return "MQTT link (paho)" if name.startswith("paho-mqtt-client-") else name


def by_thread(split: CpuSplit) -> str:
    """The device's threads with their CPU (ms), largest first."""
    return ", ".join(
        f"{short_name(name)} {1000 * cpu:.1f}"
        for name, cpu in sorted(split.by_thread.items(), key=lambda item: -item[1])
        if cpu >= 0.0005 or name == ENDED)


def thread_names(runs: list[tuple[float, CpuSplit, int]]) -> list[str]:
    """The names of the device's threads in any run, the largest median first."""
    names = {name for _, split, _ in runs for name in split.by_thread}
    return sorted(names, key=lambda name: -median(
        split.by_thread.get(name, 0.0) for _, split, _ in runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--mb", type=float, default=5.0)
    parser.add_argument("--mbit", type=float, default=20.0)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--releases", type=int, default=3,
                        help="uncut releases measured (their median is reported)")
    parser.add_argument("--delay-side", choices=("service", "device"), default="service",
                        help="where the delay proxies run: on the service's side of the "
                        "link (the device connects over it), or on the device's loopback "
                        "(the former topology, for comparison)")
    args = parser.parse_args()
    if args.releases < 1:
        parser.error("--releases must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the namespaces go on SIGTERM too
    if os.geteuid() != 0:
        print("bench_release_uplink: needs root for network namespaces and tc; not run")
        return 0
    # The device's threads run in this process: set it up as `doorbell-agent run` does
    # (its re-seal alone runs here too, under the same settings).
    tune_malloc()
    no_huge_pages()
    size = int(args.mb * 1024 * 1024)
    work = Path(tempfile.mkdtemp(prefix="bench-uplink-"))
    link = ShapedLink.create(f"dbup{os.getpid() % 100000}", rate_mbit=args.mbit)
    proxies: list[Proxy] = []
    process: subprocess.Popen[bytes] | None = None
    broker: Broker | None = None
    service = None
    http: httpx.Client | None = None
    try:
        with link.enter("svc"):
            deployment = make_deployment(work / "deploy", broker_host=SVC_ADDRESS)
            broker = Broker(deployment=deployment, workdir=work / "broker")
            broker.workdir.mkdir(mode=0o700)
            broker.start()
            cloud_port = free_port()
            far_delay = args.rtt_ms / 2 if args.delay_side == "service" else 0.0
            forward_mqtt = Proxy(f"{SVC_ADDRESS}:0", f"127.0.0.1:{broker.port}",
                                 delay_ms=far_delay)
            forward_http = Proxy(f"{SVC_ADDRESS}:0", f"127.0.0.1:{cloud_port}",
                                 delay_ms=far_delay, cut_after=size // 2)
            proxies += [forward_mqtt, forward_http]
        if args.delay_side == "service":  # the device's connections go straight over the link
            mqtt_host, mqtt_port = SVC_ADDRESS, forward_mqtt.port
            device_url = f"http://{SVC_ADDRESS}:{forward_http.port}"
        else:  # the former topology: delay proxies on the device's loopback
            with link.enter("dev"):
                device_mqtt = Proxy("127.0.0.1:0", f"{SVC_ADDRESS}:{forward_mqtt.port}",
                                    delay_ms=args.rtt_ms / 2)
                device_http = Proxy("127.0.0.1:0", f"{SVC_ADDRESS}:{forward_http.port}",
                                    delay_ms=args.rtt_ms / 2)
                proxies += [device_mqtt, device_http]
            mqtt_host, mqtt_port = "127.0.0.1", device_mqtt.port
            device_url = f"http://127.0.0.1:{device_http.port}"  # the cloud as the device sees it
        service_url = f"http://127.0.0.1:{cloud_port}"  # the same, beside it
        store_url = f"sqlite:///{work / 'cloud.sqlite3'}"
        with link.enter("svc"):
            set_api_url(deployment, device_url)
            setup = CloudService.open(deployment.layout.root, store_url=store_url,
                                      api_url=device_url)
            http = httpx.Client(base_url=service_url, timeout=30)
            cloud = CloudServer(service=setup, url=service_url, deployment=deployment, http=http)
            device = cloud.enroll("bench")
            agency = cloud.principal("agency")
            reviewer = cloud.principal("reviewer", org="court-liaison")
            setup.close()
            process = start_cloud(deployment, store_url, cloud_port, broker.port,
                                  work / "cloud.log")
            device_id = device.bundle.device_id_file.read_text().strip()
            watcher = ResultWatcher(broker, device_id, deployment.prefix)
            watcher_thread = watcher.client._thread  # paho's network thread (loop_start)
            assert watcher_thread is not None
        with link.enter("dev"):
            rig = make_rig(deployment, work, broker_host=mqtt_host, broker_port=mqtt_port,
                           bundle=device.bundle, release={"cloud_url": device_url},
                           keepalive_s=MqttSettings.keepalive_s)  # deployed, not the tests' 5 s
            rig.clock.set(datetime.now(UTC).replace(microsecond=0))
            base = rig.clock.now() - timedelta(minutes=50)
            records = [rig.record(base + timedelta(minutes=2 * i), 60, payload=os.urandom(size))
                       for i in range(args.clips)]
            rig.clock.set(datetime.now(UTC).replace(microsecond=0))
            identities = dict(rig.identities)
            service = ReleaseService(rig.config, StoreVault(rig.store), rig.clock,
                                     escrow_outbox=rig.store.escrow_outbox,
                                     timing=ServiceTiming())  # the deployed timing
            service.start()
        outbox = EscrowOutbox(rig.config.agent.state_dir / "vault" / "outbox")
        deadline = time.monotonic() + 120
        while outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not outbox.pending(), "epoch keys were not escrowed over the link"

        paths = [rig.store.sealed_path(r.id) for r in records]
        epochs = [r.epoch_id for r in records]
        recipient = agency.recipient or ""

        def reseal_cpu(attempt: int) -> tuple[float, float, float, float]:
            """(thread CPU, process CPU, wall) of one re-seal alone in this thread, over
            the same files with a warm page cache (nanosecond clocks; /proc counts ticks),
            and the thread CPU of removing what it wrote (a release removes its re-sealed
            files in its job; printed beside, not judged)."""
            out = work / f"baseline-{attempt}"
            cpu, process_cpu = time.thread_time(), time.process_time()
            wall, _, _ = reseal_alone(paths, identities, epochs, recipient, out)
            taken = (time.thread_time() - cpu, time.process_time() - process_cpu, wall)
            removing = time.thread_time()
            shutil.rmtree(out)
            return (*taken, time.thread_time() - removing)

        own = [threading.main_thread(), watcher_thread]
        world = cloud.world(agency, rig.device_id)
        window = {"start": format_time(base - timedelta(minutes=1)),
                  "end": format_time(rig.clock.now() - timedelta(minutes=1))}

        def release(cut: bool) -> tuple[float, CpuSplit, int]:
            with link.enter("svc"):
                request = cloud.submit(agency, world.warrant(device_ids=[rig.device_id],
                                                            window=window)).json()
            if cut:
                forward_http.arm_cut()
            rig.clock.set(datetime.now(UTC).replace(microsecond=0))  # the device's clock runs
            sent, cpu = link.sent_bytes(), CpuSample.take()
            started = time.perf_counter()
            with link.enter("svc"):
                approved = cloud.http.post(f"/v1/requests/{request['id']}/approve",
                                           json=REASON, headers=reviewer.headers).json()
            try:
                result = watcher.result(approved["tokens"][0]["jti"], timeout=RESULT_TIMEOUT_S)
            except AssertionError:
                print(service.layout.audit_log.read_text()[-3000:], file=sys.stderr)
                raise
            latency = time.perf_counter() - started
            split = CpuSplit.between(cpu, CpuSample.take(), own)
            assert result["status"] == "uploaded", result
            assert len(result["clips"]) == args.clips, result
            return (latency, split, link.sent_bytes() - sent)

        def bound_s(wire: int) -> float:
            """The link's bound for `wire` bytes up: their time at the shaped rate and
            the round trips the protocol needs in series."""
            return link.bound_s(wire) + ROUND_TRIPS * float(args.rtt_ms) / 1000

        payload_mb = args.clips * size / 1e6
        resealed: list[tuple[float, float, float, float]] = []  # CPU, process, wall, removal
        runs: list[tuple[float, CpuSplit, int]] = []
        print(f"release of {args.clips} clips x {args.mb:g} MiB = {payload_mb:.1f} MB over a "
              f"{args.mbit:g} Mbit/s tbf uplink with {args.rtt_ms:g} ms RTT (delay proxies "
              f"on the {args.delay_side}'s side)", flush=True)
        for number in range(1, args.releases + 1):
            paired = [reseal_cpu(len(resealed) + i) for i in range(RESEALS_PER_RELEASE)]
            resealed += paired
            runs.append(release(cut=False))
            latency, split, wire = runs[-1]
            paired_cpu = median(cpu for cpu, _, _, _ in paired)
            print(f"  release {number}: {latency:.3f} s ({latency / bound_s(wire):.2f}x the "
                  f"link's bound); device CPU {1000 * split.measured:.1f} ms, "
                  f"{split.measured / paired_cpu:.2f}x its re-seals alone "
                  f"({1000 * paired_cpu:.1f} ms); by thread: {by_thread(split)}", flush=True)
        cut_latency, _, cut_wire = release(cut=True)
        cut_seen = forward_http.cut_report()
        assert cut_seen.startswith("cut after"), cut_seen

        latency = median(run[0] for run in runs)
        wire = int(median(run[2] for run in runs))
        device_cpu = median(run[1].measured for run in runs)
        process_cpu = median(run[1].process for run in runs)
        baseline_cpu = median(cpu for cpu, _, _, _ in resealed)
        baseline_process_cpu = median(cpu for _, cpu, _, _ in resealed)
        baseline = median(wall for _, _, wall, _ in resealed)
        with_removal = median(cpu + removal for cpu, _, _, removal in resealed)
        bound = bound_s(wire)
        print(f"median of {len(runs)} releases, against the median of {len(resealed)} "
              "re-seals alone")
        print(f"  on the wire up: {wire / 1e6:.2f} MB ({wire / (args.clips * size) - 1:+.1%} "
              f"over the payload); with one cut ({cut_seen}): {cut_wire / 1e6:.2f} MB")
        print(ratio_line("token published -> result acknowledged (s)", latency, bound, "s",
                         "target <= 1.10x the link's bound"))
        print(ratio_line("same, the upload cut once mid-clip (s)", cut_latency, bound, "s",
                         "target <= 1.25x the link's bound"))
        print(ratio_line("device CPU per released MB (ms/MB)",
                         1000 * device_cpu / payload_mb,
                         1000 * baseline_cpu / payload_mb, "ms/MB",
                         "target <= 1.3x re-sealing alone"))
        print(ratio_line("  against re-seals that remove their files (ms/MB)",
                         1000 * device_cpu / payload_mb,
                         1000 * with_removal / payload_mb, "ms/MB",
                         "informative: not the target's baseline"))
        print(ratio_line("  whole process, bench threads too (ms/MB)",
                         1000 * process_cpu / payload_mb,
                         1000 * baseline_process_cpu / payload_mb, "ms/MB",
                         "informative: the former figure"))
        print("  by thread, median (ms): " + ", ".join(
            f"{short_name(name)} "
            f"{1000 * median(run[1].by_thread.get(name, 0.0) for run in runs):.1f}"
            for name in thread_names(runs)) +
            f"; the bench's own threads {1000 * median(run[1].own for run in runs):.1f}")
        print(ratio_line("re-sealing alone (s, informative)", baseline, bound, "s",
                         "informative: vs the link's bound"))
        return 0
    finally:
        if service is not None:
            service.stop()
        if http is not None:
            http.close()
        if process is not None:
            stop_process(process)
        for proxy in proxies:
            proxy.stop()
        if broker is not None:
            broker.close()
        link.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
