"""Peak memory of the agent recording 1280x720 for ten minutes of simulated time.

Runs ``doorbell-agent simulate --scene visitor --duration 600 --fast`` as a child
process with a post-roll long enough that it records the whole time (clips are cut at
`max_clip_s` = 120 s and continue), and samples the child's VmRSS/VmHWM from /proc
while reading the simulated time from its status file. Figures: peak RSS against the
110 MiB target (and the former 150 MiB budget), and RSS at minute ten against RSS at
minute two (baseline, same run): the growth must stay within 4 MiB. It also prints
the largest anonymous and file-backed parts it sampled (RssAnon, RssFile): the second
is the shared libraries' pages, whose count depends on the page cache (bench/README.md).

First it prints what each import costs: a fresh interpreter imports the agent's
libraries one after the other, in the order the agent loads them, and reports the
growth of its RSS at each step (shared libraries count where they are first mapped),
beside the modules a `pi` camera or a disabled service no longer loads
(docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

Run: .venv/bin/python bench/bench_agent_memory.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyrage
import tomli_w

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    args = parser.parse_args()
    import_costs()
    agent = Path(sys.executable).parent / "doorbell-agent"
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
        duration = 60 * args.minutes + 20  # minute N is sampled while still recording
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
        per_minute: dict[int, int] = {}
        peak = peak_anon = peak_file = 0
        start: datetime | None = None
        began = time.monotonic()
        while proc.poll() is None:
            sample = proc_memory(proc.pid)
            if sample is not None:
                rss, hwm, anon, file = sample
                peak = max(peak, hwm)
                peak_anon, peak_file = max(peak_anon, anon), max(peak_file, file)
                seconds, start = simulated_seconds(state / "status.json", start)
                minute = int(seconds // 60)
                if 1 <= minute <= args.minutes and minute not in per_minute:
                    per_minute[minute] = rss
                    print(
                        f"  minute {minute:2d}: RSS {rss / MiB:7.1f} MiB "
                        f"(peak so far {peak / MiB:6.1f} MiB, "
                        f"wall {time.monotonic() - began:5.0f} s)",
                        flush=True,
                    )
            time.sleep(0.25)
        out = proc.stdout.read().decode() if proc.stdout else ""
        if proc.returncode != 0:
            raise SystemExit(f"agent failed with {proc.returncode}")
        clips = json.loads(out.strip().splitlines()[-1])["clips_sealed"]
    print(f"  clips sealed: {clips}")
    print(f"  sampled: anonymous up to {peak_anon / MiB:.1f} MiB, file-backed up to "
          f"{peak_file / MiB:.1f} MiB (shared libraries' pages: how many count depends on "
          "the page cache, see bench/README.md)")
    print(ratio_line("agent peak RSS, 1280x720 (vs target)", peak / MiB, TARGET_MIB, "MiB",
                     "target <= 1.00"))
    print(ratio_line("agent peak RSS, 1280x720 (vs former budget)", peak / MiB,
                     FORMER_BUDGET_MIB, "MiB", "informative: the stage-one budget"))
    first, last = 2, max(per_minute)
    if first in per_minute:
        growth = (per_minute[last] - per_minute[first]) / MiB
        print(
            ratio_line(
                f"RSS at minute {last} (vs minute {first})",
                per_minute[last] / MiB,
                per_minute[first] / MiB,
                "MiB",
                f"growth {growth:+.1f} MiB, target within {GROWTH_TOLERANCE_MIB:g} MiB",
            )
        )


if __name__ == "__main__":
    main()
