"""Peak memory of the agent recording 1280x720 for ten minutes of simulated time.

Runs ``doorbell-agent simulate --scene visitor --duration 600 --fast`` as a child
process with a post-roll long enough that it records the whole time (clips are cut at
`max_clip_s` = 120 s and continue), and samples the child's VmRSS/VmHWM from /proc
while reading the simulated time from its status file. Figures: peak RSS against the
110 MiB target (and the former 150 MiB budget), and RSS at minute ten against RSS at
minute two (baseline, same run): the growth must stay within 4 MiB. It also prints
the largest anonymous and file-backed parts it sampled (RssAnon, RssFile) and Pss.

The file-backed part is the shared libraries' pages, and how many the agent maps
depends on how the page cache holds them (bench/README.md, "Memory: the page-cache
state"), so the agent runs in two states, each named: as installed (the virtualenv's
shared libraries written anew first, same bytes, as pip writes them: on this kernel
they sit in large folios) and after a reboot (the same files dropped from the page
cache first, as a power cut does; they are read back as the agent faults them in).
The target is judged after a reboot, the state a doorbell runs in for all but its
first start after an install, and the state install.sh leaves it in; the other is
printed beside it. Which files' pages differ between the two is printed too, and, as
root, the share of the mapped library pages that sit in large folios.

First it prints what each import costs: a fresh interpreter imports the agent's
libraries one after the other, in the order the agent loads them, and reports the
growth of its RSS at each step (shared libraries count where they are first mapped),
beside the modules a `pi` camera or a disabled service no longer loads
(docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

Run: .venv/bin/python bench/bench_agent_memory.py [--minutes 10]
     [--state both|installed|after-reboot]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyrage
import tomli_w

from bench import _pagecache
from bench._report import ratio_line

MiB = 1024 * 1024
TARGET_MIB = 110.0
FORMER_BUDGET_MIB = 150.0
GROWTH_TOLERANCE_MIB = 4.0

# In the order the agent's start loads them; the last ones only when configured.
IMPORTS: tuple[tuple[str, str], ...] = (
    ("device.config", "configuration (standard library only, no pydantic)"),
    ("numpy", "frames"),
    ("av", "MP4 muxing; libx264 for the sim/v4l2/file cameras"),
    ("cryptography.hazmat.primitives.ciphers.aead", "age payload sealing"),
    ("pyrage", "age recipients"),
    ("device.agent", "the agent itself, with the above"),
    ("device.camera.sim", "sim camera (software encoder); not with camera.source = pi"),
    ("httpx", "release uploads (mqtt.enabled)"),
    ("device.release.supervisor", "release service with paho (mqtt.enabled)"),
    ("device.homeassistant", "Home Assistant bridge (home_assistant.enabled)"),
    ("cv2", "OpenCV: the v4l2 camera only (not loaded by sim or pi)"),
)
IMPORT_PROBE = """
import importlib, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
print(f"python {rss():.1f}")
for name in sys.argv[1:]:
    before = rss()
    importlib.import_module(name)
    print(f"{name} {rss() - before:.1f}")
"""


def import_costs() -> None:
    """Print the RSS each import adds in a fresh interpreter, in the agent's order."""
    names = [name for name, _ in IMPORTS]
    env = {"OPENBLAS_NUM_THREADS": "1", **os.environ}  # as the agent's commands set it
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *names], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                         env=env).stdout
    why = dict(IMPORTS)
    print("RSS added by each import (fresh interpreter, agent order):")
    for line in out.splitlines():
        name, value = line.rsplit(" ", 1)
        print(f"  {name:<46} {float(value):6.1f} MiB  {why.get(name, 'the interpreter')}")


STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def proc_memory(pid: int) -> tuple[int, int, int, int] | None:
    """(VmRSS, VmHWM, RssAnon, RssFile) in bytes, None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in STATUS_KEYS:
            values[key] = int(rest.split()[0]) * 1024
    if len(values) < len(STATUS_KEYS):
        return None
    rss, hwm, anon, file = (values[key] for key in STATUS_KEYS)
    return rss, hwm, anon, file


def simulated_seconds(status: Path, start: datetime | None) -> tuple[float, datetime | None]:
    try:
        data = json.loads(status.read_text())
    except (OSError, ValueError):
        return 0.0, start
    now = datetime.fromisoformat(data["clock"]["now"])
    if start is None:
        start = now
    return (now - start).total_seconds(), start


def proc_pss(pid: int) -> int | None:
    """Pss from /proc/PID/smaps_rollup in bytes (shared pages divided among mappers)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


@dataclass
class Run:
    """What one agent run sampled (bytes); `per_minute` is VmRSS at each minute."""

    peak: int = 0
    anon: int = 0
    file: int = 0
    pss: int = 0
    large_folios: float | None = None
    by_file: dict[str, int] = field(default_factory=dict)
    per_minute: dict[int, int] = field(default_factory=dict)
    clips: int = 0


def run_agent(minutes: int, prefix: Path) -> Run:
    """Run the agent for `minutes` simulated minutes at 1280x720, sampling its memory."""
    agent = Path(sys.executable).parent / "doorbell-agent"
    run = Run()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        state = root / "state"
        config = root / "agent.toml"
        config.write_text(
            tomli_w.dumps(
                {
                    "agent": {"state_dir": str(state)},
                    "camera": {"width": 1280, "height": 720, "fps": 30},
                    "recorder": {"post_roll_s": 300.0, "max_clip_s": 120.0},
                    "keys": {
                        "owner_recipient": str(pyrage.x25519.Identity.generate().to_public()),
                        "escrow_recipient": str(pyrage.x25519.Identity.generate().to_public()),
                    },
                }
            )
        )
        duration = 60 * minutes + 20  # minute N is sampled while still recording
        command = [
            str(agent),
            "--config",
            str(config),
            "simulate",
            "--scene",
            "visitor",
            "--duration",
            str(duration),
            "--fast",
        ]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        start: datetime | None = None
        began = time.monotonic()
        while proc.poll() is None:
            sample = proc_memory(proc.pid)
            if sample is not None:
                rss, hwm, anon, file = sample
                run.peak = max(run.peak, hwm)
                run.anon, run.file = max(run.anon, anon), max(run.file, file)
                seconds, start = simulated_seconds(state / "status.json", start)
                minute = int(seconds // 60)
                if 1 <= minute <= minutes and minute not in run.per_minute:
                    run.per_minute[minute] = rss
                    run.pss = max(run.pss, proc_pss(proc.pid) or 0)
                    if minute == min(2, minutes):
                        run.large_folios = _pagecache.large_folio_share(proc.pid, prefix)
                        run.by_file = _pagecache.mapped_by_file(proc.pid)
                    print(
                        f"  minute {minute:2d}: RSS {rss / MiB:7.1f} MiB "
                        f"(peak so far {run.peak / MiB:6.1f} MiB, "
                        f"wall {time.monotonic() - began:5.0f} s)",
                        flush=True,
                    )
            time.sleep(0.25)
        out = proc.stdout.read().decode() if proc.stdout else ""
        if proc.returncode != 0:
            raise SystemExit(f"agent failed with {proc.returncode}")
        run.clips = json.loads(out.strip().splitlines()[-1])["clips_sealed"]
    return run


def describe_cache(libraries: list[Path]) -> str:
    resident, total = _pagecache.resident_bytes(libraries)
    return (f"the virtualenv's {len(libraries)} shared libraries: {resident / MiB:.1f} of "
            f"{total / MiB:.1f} MiB in the page cache")


def report(name: str, run: Run) -> None:
    share = ("not readable (needs root)" if run.large_folios is None
             else f"{100 * run.large_folios:.0f} %")
    print(f"  {name}: clips sealed {run.clips}; sampled RssAnon up to {run.anon / MiB:.1f} MiB, "
          f"RssFile up to {run.file / MiB:.1f} MiB, Pss up to {run.pss / MiB:.1f} MiB "
          f"(at the minute samples); the virtualenv's library pages it mapped that sit in "
          f"large folios: {share}")


def compare_files(installed: Run, rebooted: Run, rows: int = 10) -> None:
    """The files whose mapped pages differ most between the two states (minute 2)."""
    paths = {path for path in set(installed.by_file) | set(rebooted.by_file)
             if abs(installed.by_file.get(path, 0) - rebooted.by_file.get(path, 0)) >= 64 * 1024}
    diff = sorted(paths, key=lambda p: rebooted.by_file.get(p, 0) - installed.by_file.get(p, 0))
    total = sum(installed.by_file.values()) - sum(rebooted.by_file.values())
    print("RSS of mapped files at the second minute's sample, as installed -> after a reboot "
          f"(all files: {total / MiB:+.1f} MiB apart; the {rows} furthest apart):")
    for path in diff[:rows]:
        before, after = installed.by_file.get(path, 0), rebooted.by_file.get(path, 0)
        print(f"  {before / MiB:6.1f} -> {after / MiB:5.1f} MiB  {Path(path).name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument(
        "--state",
        choices=("both", "installed", "after-reboot"),
        default="both",
        help="page-cache state(s) to measure: 'installed' writes the virtualenv's shared "
        "libraries anew first (same bytes, as pip does), 'after-reboot' drops them from the "
        "page cache first, as a power cut does; default both, in that order",
    )
    args = parser.parse_args()
    prefix = Path(sys.prefix)
    libraries = _pagecache.library_files(prefix)
    print(f"page cache as found: {describe_cache(libraries)}")
    runs: dict[str, Run] = {}
    if args.state in ("both", "installed"):
        try:
            _pagecache.rewrite(libraries)
        except OSError as exc:  # a virtualenv this user cannot write: the state is not made
            raise SystemExit(f"cannot write the virtualenv's libraries anew ({exc}); "
                             "--state after-reboot measures without writing them") from exc
        print("== as installed (the virtualenv's libraries written anew first, as pip "
              f"writes them): {describe_cache(libraries)}")
        import_costs()
        runs["as installed"] = run_agent(args.minutes, prefix)
        report("as installed", runs["as installed"])
    if args.state in ("both", "after-reboot"):
        _pagecache.drop(libraries)
        print("== after a reboot (the virtualenv's libraries dropped from the page cache "
              f"first): {describe_cache(libraries)}")
        import_costs()
        _pagecache.drop(libraries)  # the import probe read some back
        runs["after a reboot"] = run_agent(args.minutes, prefix)
        report("after a reboot", runs["after a reboot"])
    if len(runs) == 2:
        compare_files(runs["as installed"], runs["after a reboot"])
    judged = "after a reboot" if "after a reboot" in runs else "as installed"
    for name, run in runs.items():
        verdict = ("target <= 1.00" if name == "after a reboot"
                   else "informative: not the judged state")
        print(ratio_line(f"agent peak RSS, 1280x720, {name} (vs target)", run.peak / MiB,
                         TARGET_MIB, "MiB", verdict))
    run = runs[judged]
    print(ratio_line(f"agent peak RSS, {judged} (vs former budget)", run.peak / MiB,
                     FORMER_BUDGET_MIB, "MiB", "informative: the stage-one budget"))
    first, last = 2, max(run.per_minute)
    if first in run.per_minute:
        growth = (run.per_minute[last] - run.per_minute[first]) / MiB
        print(
            ratio_line(
                f"RSS at minute {last} (vs minute {first}), {judged}",
                run.per_minute[last] / MiB,
                run.per_minute[first] / MiB,
                "MiB",
                f"growth {growth:+.1f} MiB, target within {GROWTH_TOLERANCE_MIB:g} MiB",
            )
        )


if __name__ == "__main__":
    main()
