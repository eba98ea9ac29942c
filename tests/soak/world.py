"""The soak's whole system: one deployment, a real PostgreSQL, mosquitto, the cloud stub,
a cutting proxy on the evidence path and several agents on simulated cameras.

Everything runs as separate processes started through the real commands
(`cloud-stub`, `doorbell-agent`, `mosquitto`), as the demonstration starts them; the
soak reaches into no process's state while it runs. Faults act on the processes and on
their environment: SIGKILL, a broker restart, a full file system, a cut connection.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

from demo.agency import ApiClient
from demo.processes import Supervisor
from demo.services import (
    free_port,
    http_ok,
    mosquitto_binary,
    start_and_wait,
    tls_handshake_ok,
    wait_for,
)
from protocol.bundle import BundleLayout, DeploymentLayout
from tests.soak.proxy import CutProxy

COURT_ID = "demo-district-court"
CLIP_SPACING = timedelta(minutes=4)  # a visitor clip lasts about 30 s: windows never overlap
TMPFS_SIZE = "64m"
CLOCKSHIFT_SOURCE = Path(__file__).with_name("clockshift.c")


class SoakError(RuntimeError):
    """The soak could not set up or drive the system (not a finding about the system)."""


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def run(argv: list[str], *, what: str, timeout: float = 120.0) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SoakError(f"{what} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise SoakError(f"{what} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
    return proc.stdout


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class SoakDevice:
    device_id: str
    root: Path

    @property
    def bundle(self) -> BundleLayout:
        return BundleLayout(self.root / "bundle")

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def process(self) -> str:
        return f"agent-{self.device_id}"

    @property
    def clock_offset_file(self) -> Path:
        return self.root / "clock-offset"

    def step_clock(self, seconds: int) -> None:
        """Step the running agent's wall clock by `seconds` more (seen within 0.2 s)."""
        current = int(self.clock_offset_file.read_text().strip() or "0")
        self.clock_offset_file.write_text(f"{current + seconds:+d}\n")

    def agent(self, *args: str) -> list[str]:
        return [bin_path("doorbell-agent"), "--config", str(self.config), *args]


@dataclass
class SoakWorld:
    root: Path
    supervisor: Supervisor
    store_url: str
    device_count: int = 3
    clips_per_device: int = 4
    broker_port: int = 0
    api_port: int = 0
    devices: list[SoakDevice] = field(default_factory=list)
    clients: dict[str, ApiClient] = field(default_factory=dict)
    agency_recipient: str = ""
    agency_identity: Path = Path()
    proxy: CutProxy | None = None
    tmpfs: bool = False
    clockshift: Path | None = None  # the built LD_PRELOAD library, when a compiler exists
    clips: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def layout(self) -> DeploymentLayout:
        return DeploymentLayout(self.root / "deployment")

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def cloud(self, *args: str) -> list[str]:
        return [bin_path("cloud-stub"), *args, "--deployment", str(self.layout.root)]

    # -- set-up ----------------------------------------------------------------------

    def set_up(self) -> None:
        self.clockshift = self._build_clockshift()
        self.broker_port, self.api_port = free_port(), free_port()
        self.proxy = CutProxy(target_port=self.api_port)
        self.proxy.start()
        # Devices upload through the proxy: the deployment's api.url (and so every
        # token's `upload`) names it; agencies and reviewers talk to the service directly.
        run(
            [
                bin_path("cloud-stub"), "init", str(self.layout.root),
                "--broker-port", str(self.broker_port),
                "--api-url", f"http://127.0.0.1:{self.proxy.listen_port}",
                "--broker-user", getpass.getuser(),
            ],
            what="cloud-stub init",
        )
        self._tune_deployment()
        self.layout.store_url_file.write_text(self.store_url + "\n")
        owner_key = self.root / "owner.key"
        run(["age-keygen", "-o", str(owner_key)], what="age-keygen")
        owner_recipient = run(["age-keygen", "-y", str(owner_key)], what="age-keygen -y").strip()
        for index in range(self.device_count):
            device = SoakDevice(f"soak-{index}", self.root / "devices" / f"soak-{index}")
            device.root.mkdir(parents=True)
            run(
                self.cloud(
                    "devices", "enroll", device.device_id, "--owner-recipient", owner_recipient,
                    "--out", str(device.bundle.root), "--install-dir", str(device.bundle.root),
                ),
                what=f"devices enroll {device.device_id}",
            )
            self.tmpfs = self._mount_state(device) or self.tmpfs
            self._write_agent_config(device)
            self.devices.append(device)
        self._principals()
        self._move_decisive_keys_off_host()
        start_and_wait(
            self.supervisor, "mosquitto",
            [mosquitto_binary(), "-c", str(self.layout.root / "broker" / "mosquitto.conf")],
            self.broker_ready,
        )
        self.start_cloud()

    def _build_clockshift(self) -> Path | None:
        """Compile tests/soak/clockshift.c (docs/soak.md: the clock step). None when
        there is no C compiler; the schedule then leaves the clock step out."""
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            return None
        target = self.root / "libclockshift.so"
        run([compiler, "-shared", "-fPIC", "-O2", "-o", str(target), str(CLOCKSHIFT_SOURCE),
             "-ldl"], what="cc clockshift.c")
        return target

    @property
    def off_host(self) -> Path:
        """Where the keys the service host must not hold go (ADR 0013): the offline root
        keys, the test court's key, the test reviewers' keys."""
        return self.root / "off-host"

    def _move_decisive_keys_off_host(self) -> None:
        """`serve` refuses to start while it can read them. Enrolment (done by now) made
        each device's identity certificate with the root keys."""
        self.off_host.mkdir(exist_ok=True)
        for directory in self.layout.off_host_dirs:
            if directory.exists():
                directory.rename(self.off_host / directory.name)

    def court_key(self, court_id: str) -> Path:
        return self.off_host / self.layout.test_courts_dir.name / f"{court_id}.key"

    def _tune_deployment(self) -> None:
        path = self.layout.root / "deployment.toml"
        document = tomllib.loads(path.read_text())
        # A token the broker lost is published again after 3 s, not 60: the soak's
        # broker restarts must be survived within its run.
        document["redelivery"] = {"initial_s": 3, "max_s": 15}
        path.write_text(tomli_w.dumps(document))

    def _mount_state(self, device: SoakDevice) -> bool:
        """The device's state directory on a tmpfs of its own, so a full disk is a real
        ENOSPC. Without the privilege to mount, the directory is plain and the full-disk
        fault is left out of the schedule (and the report says so)."""
        device.state_dir.mkdir()
        if os.geteuid() != 0:
            return False
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs",
             str(device.state_dir)],
            capture_output=True, text=True, check=False,
        )
        return result.returncode == 0

    def _write_agent_config(self, device: SoakDevice) -> None:
        config: dict[str, Any] = tomllib.loads(device.bundle.config.read_text())
        config["agent"]["state_dir"] = str(device.state_dir)
        config["camera"] = {
            "source": "sim", "scene": "empty", "width": 320, "height": 240, "fps": 10,
            "lores_width": 160, "lores_height": 120,
        }
        config["recorder"] = {"post_roll_s": 10.0}
        # The state directory is a small tmpfs (TMPFS_SIZE). No free-space floor: the
        # full-disk fault is another file filling the disk, and with a floor retention
        # would rightly delete the oldest clips to make room (docs/soak.md), which would
        # hide what the fault is for: ENOSPC in the middle of a re-seal or an append.
        config["storage"] = {"min_free_bytes": 0}
        # No NTP in this sandbox; see docs/adr/0009-clock-and-deferral.md.
        config.setdefault("release", {})["clock"] = "unsafe-assume-synchronized"
        device.config.write_text(tomli_w.dumps(config))

    def _principals(self) -> None:
        def add(kind: str, name: str, *org: str) -> dict[str, Any]:
            out = run(self.cloud(kind, "add", name, *org, "--json"), what=f"{kind} add {name}")
            answer: dict[str, Any] = json.loads(out)
            return answer

        agency = add("agencies", "soak-police")
        self.agency_recipient = agency["recipient"]
        self.agency_identity = Path(agency["identity_file"])
        self.clients["agency"] = ApiClient(self.api_url, agency["api_key"])
        for name, org in (("rev-a", "court-liaison"), ("rev-b", "civil-rights-office")):
            reviewer = add("reviewers", name, "--org", org)
            self.clients[name] = ApiClient(self.api_url, reviewer["api_key"])
        admin = add("admins", "ops", "--org", "operator")
        self.clients["admin"] = ApiClient(self.api_url, admin["api_key"])

    def broker_ready(self) -> bool:
        return tls_handshake_ok(
            self.broker_port, self.layout.ca_cert, self.layout.cloud_mqtt_cert,
            self.layout.cloud_mqtt_key,
        )

    # -- recordings --------------------------------------------------------------------

    def record(self) -> None:
        """Each device records `clips_per_device` visitor clips, dated in the recent past
        and spaced so that a window can cover exactly one of them."""
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        pending: list[tuple[SoakDevice, subprocess.Popen[str]]] = []
        for index in range(self.clips_per_device):
            start = base - CLIP_SPACING * (self.clips_per_device - index)
            for device in self.devices:
                argv = device.agent(
                    "simulate", "--scene", "visitor", "--duration", "32", "--fast",
                    "--start", rfc3339(start), "--seed", str(index),
                )
                pending.append((device, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                         stderr=subprocess.STDOUT, text=True)))
            for device, proc in pending:
                out, _ = proc.communicate(timeout=300)
                if proc.returncode != 0:
                    raise SoakError(f"simulate on {device.device_id} failed: {out[-800:]}")
            pending.clear()
        for device in self.devices:
            self.clips[device.device_id] = self.list_clips(device)
            if len(self.clips[device.device_id]) != self.clips_per_device:
                raise SoakError(
                    f"{device.device_id} recorded {len(self.clips[device.device_id])} clips, "
                    f"expected {self.clips_per_device}"
                )

    def list_clips(self, device: SoakDevice) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(
            run(device.agent("clips", "list", "--json"), what="clips list")
        )
        return listed

    # -- processes ---------------------------------------------------------------------

    def start_cloud(self) -> None:
        start_and_wait(
            self.supervisor, "cloud-stub",
            [bin_path("cloud-stub"), "serve", "--deployment", str(self.layout.root),
             "--host", "127.0.0.1", "--port", str(self.api_port)],
            lambda: http_ok(f"{self.api_url}/healthz"),
            timeout=60.0,
        )

    def start_agent(self, device: SoakDevice) -> None:
        env: dict[str, str] = {}
        if self.clockshift is not None:
            if not device.clock_offset_file.exists():
                device.clock_offset_file.write_text("+0\n")
            env = {"LD_PRELOAD": str(self.clockshift),
                   "CLOCKSHIFT_FILE": str(device.clock_offset_file)}
        self.supervisor.start(device.process, device.agent("run"), env=env)

        def ready() -> bool:
            self.supervisor.check_alive(device.process)
            return (device.state_dir / "status.json").exists()

        wait_for(f"{device.device_id}'s agent to start", ready, timeout=60.0)

    def restart_broker(self) -> None:
        self.supervisor.stop("mosquitto")
        start_and_wait(
            self.supervisor, "mosquitto",
            [mosquitto_binary(), "-c", str(self.layout.root / "broker" / "mosquitto.conf")],
            self.broker_ready,
        )

    def escrow_settled(self, device: SoakDevice) -> bool:
        outbox = device.state_dir / "vault" / "outbox"
        return outbox.is_dir() and not any(p.suffix == ".json" for p in outbox.iterdir())

    def wait_escrowed(self, timeout: float = 90.0) -> None:
        for device in self.devices:
            wait_for(f"{device.device_id}'s epoch keys to be acknowledged",
                     functools.partial(self.escrow_settled, device), timeout=timeout)

    @contextlib.contextmanager
    def full_disk(self, device: SoakDevice) -> Iterator[Path]:
        """Fill the device's file system to the last byte; free it on exit."""
        filler = device.state_dir / "filler.bin"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block)
        finally:
            os.close(fd)
        try:
            yield filler
        finally:
            filler.unlink(missing_ok=True)

    def tear_down(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for device in self.devices:
            if self.tmpfs:
                subprocess.run(["umount", "-l", str(device.state_dir)], check=False,
                               capture_output=True)
