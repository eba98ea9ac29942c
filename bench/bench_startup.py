"""Start-up of the agent: process start to ready (sd_notify) and to the first frame
recorded into the pre-roll, against a bare ``python -c "import cv2, av, numpy"``.

A doorbell that reboots after a power cut must be watching again at once. Each run
starts ``doorbell-agent run`` (1280x720 sim camera in real time, a fresh state
directory) as systemd would: ``NOTIFY_SOCKET`` names a Unix datagram socket this
process reads, and ``WATCHDOG_USEC`` is set so that the main loop's first heartbeat,
sent right after the first frame has gone through motion and into the recorder's
pre-roll (`Agent._loop`), marks the first frame. ``READY=1`` is sent just before that
heartbeat; the store is opened and recovered, and the services started, after it, in a
start-up thread (`device/startup.py`). The agent is then stopped with SIGTERM. Runs
alternate with the bare import of the video stack, so both see the same machine; the
figures are medians.

`--other-tree DIR` also starts, in each run, the agent of another checkout of the
project (DIR first on its ``PYTHONPATH``), e.g. ``git archive main | tar -x -C DIR``,
and prints its figures beside this tree's against the same baseline.

Both trees are byte-compiled first (`compileall`), as an installed agent is: with
``PYTHONDONTWRITEBYTECODE`` set (some shells and CI set it) nothing is ever cached and
every start compiles the agent's modules from source, about 35 ms here, which the
baseline's libraries (compiled at install) never pay.

Run: .venv/bin/python bench/bench_startup.py [--runs 5] [--other-tree DIR]
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyrage
import tomli_w

from bench._report import ratio_line

AGENT = Path(sys.executable).with_name("doorbell-agent")
BARE = [sys.executable, "-c", "import cv2, av, numpy"]
TIMEOUT_S = 60.0


def byte_compile(tree: Path) -> None:
    """Write the `__pycache__` of the agent's packages in `tree` (see the docstring)."""
    for package in ("device", "protocol", "mqtt_session"):
        if not compileall.compile_dir(tree / package, quiet=1):
            raise SystemExit(f"cannot byte-compile {tree / package}")


def bare_import_s() -> float:
    started = time.monotonic()
    subprocess.run(BARE, check=True)
    return time.monotonic() - started


def write_config(root: Path) -> Path:
    config = root / "agent.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "agent": {"state_dir": str(root / "state")},
                "camera": {"source": "sim", "width": 1280, "height": 720, "fps": 30},
                "keys": {
                    "owner_recipient": str(pyrage.x25519.Identity.generate().to_public()),
                    "escrow_recipient": str(pyrage.x25519.Identity.generate().to_public()),
                },
            }
        )
    )
    return config


def agent_start(root: Path, tree: Path | None = None) -> tuple[float, float]:
    """(seconds to READY=1, seconds to the first frame) of one `doorbell-agent run`;
    with `tree`, the agent of that checkout."""
    config = write_config(root)
    address = root / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(TIMEOUT_S)
        env = {**os.environ, "NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "60000000"}
        env.pop("WATCHDOG_PID", None)
        if tree is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
        started = time.monotonic()
        process = subprocess.Popen(
            [str(AGENT), "--config", str(config), "run"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        ready = first_frame = None
        try:
            while ready is None or first_frame is None:
                fields = sock.recv(4096).decode().splitlines()
                now = time.monotonic() - started
                if "READY=1" in fields and ready is None:
                    ready = now
                if "WATCHDOG=1" in fields and first_frame is None:
                    first_frame = now
        except TimeoutError as exc:
            raise SystemExit(f"no READY=1 and first frame within {TIMEOUT_S} s") from exc
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return ready, first_frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--other-tree", type=Path, help="also time this checkout's agent")
    args = parser.parse_args()
    byte_compile(Path(__file__).resolve().parents[1])
    if args.other_tree is not None:
        byte_compile(args.other_tree)
    bare_import_s()  # warm the page cache for both
    bare: list[float] = []
    ready: list[float] = []
    frame: list[float] = []
    other: list[tuple[float, float]] = []
    for run in range(args.runs):
        bare.append(bare_import_s())
        if args.other_tree is not None:
            with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
                other.append(agent_start(Path(tmp), args.other_tree))
            print(f"  run {run + 1}: other tree: ready {other[-1][0]:.3f} s, "
                  f"first frame {other[-1][1]:.3f} s", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            to_ready, to_frame = agent_start(Path(tmp))
        ready.append(to_ready)
        frame.append(to_frame)
        print(f"  run {run + 1}: bare import {bare[-1]:.3f} s, ready {to_ready:.3f} s, "
              f"first frame {to_frame:.3f} s", flush=True)
    baseline = statistics.median(bare)
    print(f"agent start-up, 1280x720 sim camera, median of {args.runs} runs")
    print(ratio_line("process start -> first frame in pre-roll (s)", statistics.median(frame),
                     baseline, "s", "target <= 1.5x bare import of cv2, av, numpy"))
    print(ratio_line("process start -> READY=1 (s)", statistics.median(ready), baseline, "s",
                     "informative: vs the same baseline"))
    if other:
        print(f"the agent of {args.other_tree}, same runs and baseline")
        print(ratio_line("process start -> first frame in pre-roll (s)",
                         statistics.median(x[1] for x in other), baseline, "s", "other tree"))
        print(ratio_line("process start -> READY=1 (s)",
                         statistics.median(x[0] for x in other), baseline, "s", "other tree"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
