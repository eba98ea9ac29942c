"""One soak run from set-up to verdict, shared by `python -m tests.soak` and the test."""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.processes import Supervisor
from tests.fixtures.postgres import create_database, postgres_cluster
from tests.soak.checks import Findings, check_custody, check_devices, check_rounds
from tests.soak.driver import Fault, Schedule
from tests.soak.world import SoakWorld

FINAL_SETTLE_S = 120.0


@dataclass(frozen=True, slots=True)
class SoakOptions:
    seed: int = 1
    rounds: int = 10
    devices: int = 3
    work_dir: Path | None = None
    kinds: tuple[Fault, ...] = ()


@dataclass
class SoakReport:
    options: SoakOptions
    faults: Counter[str]
    findings: Findings
    seconds: float
    tmpfs: bool
    clock_steps: bool

    def as_dict(self) -> dict[str, Any]:
        f = self.findings
        return {
            "seed": self.options.seed,
            "rounds": self.options.rounds,
            "devices": self.options.devices,
            "faults_injected": dict(self.faults),
            "faults_total": sum(n for k, n in self.faults.items() if k != "none"),
            "releases_uploaded_once": f.uploaded_once,
            "refused_with_code": dict(f.refused),
            "waiting_with_reason": f.waiting,
            "custody_records_checked": f.custody_records,
            "evidence_files_opened": f.files_checked,
            "lost_or_wrong": f.lost,
            "problems": f.problems,
            "disk_full_fault": "on" if self.tmpfs else "off (no privilege to mount a tmpfs)",
            "clock_step_fault": "on" if self.clock_steps else "off (no C compiler)",
            "seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        d = self.as_dict()
        lines = [
            f"soak seed {d['seed']}: {d['rounds']} rounds on {d['devices']} agents in "
            f"{d['seconds']} s",
            f"faults injected: {d['faults_total']} {d['faults_injected']}",
            f"releases uploaded exactly once: {d['releases_uploaded_once']}; refused with a "
            f"code: {d['refused_with_code']}; "
            f"waiting with a reason: {len(d['waiting_with_reason'])}",
            f"custody records checked: {d['custody_records_checked']}; evidence files opened "
            f"with age: {d['evidence_files_opened']}; full-disk fault {d['disk_full_fault']}; "
            f"clock-step fault {d['clock_step_fault']}",
            f"lost or wrong: {d['lost_or_wrong']}",
            *(f"  PROBLEM {p}" for p in d["problems"]),
        ]
        return "\n".join(lines)


def run_soak(options: SoakOptions) -> SoakReport:
    started = time.monotonic()
    base = options.work_dir or Path(tempfile.mkdtemp(prefix="doorbell-soak-"))
    base.mkdir(parents=True, exist_ok=True)
    with postgres_cluster() as cluster, Supervisor(base / "logs") as supervisor:
        world = SoakWorld(base, supervisor, create_database(cluster),
                          device_count=options.devices,
                          clips_per_device=-(-options.rounds // options.devices))
        try:
            world.set_up()
            world.record()
            before = {d.device_id: [c["id"] for c in world.clips[d.device_id]]
                      for d in world.devices}
            for device in world.devices:
                world.start_agent(device)
            world.wait_escrowed()
            schedule = Schedule(world, options.seed, options.rounds, options.kinds)
            schedule.run()
            schedule.settle(schedule.log, FINAL_SETTLE_S)
            world.wait_escrowed()
            findings = Findings()
            check_rounds(schedule, findings, base / "downloads")
            check_custody(world, findings)
            check_devices(world, findings, before)
            for device in world.devices:
                supervisor.check_alive(device.process)
            faults = Counter(r.fault.value for r in schedule.log)
            report = SoakReport(options, faults, findings, time.monotonic() - started,
                                world.tmpfs, world.clockshift is not None)
            (base / "soak-report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
            return report
        finally:
            supervisor.stop_all()
            world.tear_down()
