"""`doorbell-agent run | simulate | ring | status`: the agent's own commands.

Thin: parse, load the configuration, build the `Agent`, install signal handlers, run.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from device.button.control import send_command
from device.clock import Clock, ManualClock, clock_from_setting
from device.config import AgentConfig, load_config
from device.errors import ConfigError, DoorbellError
from device.status_file import read_status
from device.systemd import Notifier, Watchdog

if TYPE_CHECKING:  # the agent (and its video stack) is imported only by the commands
    from device.agent import Agent  # that run it: `status` and `ring` load none of it

SCENES = ("visitor", "passerby", "empty")


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the agent (the daemon)")
    run.set_defaults(handler=cmd_run)

    sim = sub.add_parser(
        "simulate", help="run the agent on the simulated camera for a while, then exit"
    )
    sim.add_argument("--scene", choices=SCENES, required=True)
    sim.add_argument("--duration", type=float, required=True, help="seconds of scene time")
    sim.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    sim.add_argument("--seed", type=int, help="override camera.seed")
    sim.add_argument(
        "--fast", action="store_true", help="run as fast as possible instead of in real time"
    )
    sim.add_argument(
        "--start",
        help="RFC 3339 time at which the scene starts (default: now), e.g. to record a "
        "visit that happened ten minutes ago",
    )
    sim.set_defaults(handler=cmd_simulate)

    ring = sub.add_parser("ring", help="press the simulated doorbell of a running agent")
    ring.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    ring.set_defaults(handler=cmd_ring)

    status = sub.add_parser("status", help="print the agent's status (a table, or --json)")
    status.add_argument("--state-dir", type=Path, help="override agent.state_dir")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=cmd_status)


def _before_numpy() -> None:
    from device.malloc import limit_blas_threads, no_huge_pages

    limit_blas_threads()
    no_huge_pages()  # before the encoder's first buffer is touched


def _logging() -> None:
    from device.malloc import tune_malloc

    tune_malloc()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _install_signals(agent: Agent) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _with_state_dir(config: AgentConfig, state_dir: Path | None) -> AgentConfig:
    if state_dir is None:
        return config
    agent = config.agent.model_copy(update={"state_dir": state_dir})
    return config.model_copy(update={"agent": agent})


def cmd_run(args: argparse.Namespace) -> int:
    _before_numpy()
    from device.agent import Agent

    _logging()
    config = load_config(args.config)
    if config.release.cloud_url is not None:
        logging.getLogger(__name__).warning(
            "release.cloud_url in %s is not read: evidence goes to the upload URL each "
            "release token names (the cloud's api.url); remove the line", args.config,
        )
    notifier = Notifier.from_environment()
    try:
        watchdog = Watchdog.from_environment(notifier)
    except ValueError as exc:
        raise ConfigError(f"systemd watchdog environment: {exc}") from exc
    # The clock `[release] clock` names, so that the status says what the release side
    # judges tokens by (docs/adr/0009-clock-and-deferral.md). The store opens once the
    # first frame is in the pre-roll (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
    agent = Agent.from_config(
        config,
        clock=clock_from_setting(config.release.clock),
        notifier=notifier,
        store_later=True,
    )
    _install_signals(agent)
    agent.run(watchdog=watchdog)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    _before_numpy()
    from device.agent import Agent

    _logging()
    if args.duration <= 0:
        raise ConfigError("--duration must be a positive number of seconds")
    config = _with_state_dir(load_config(args.config), args.state_dir)
    camera_update: dict[str, Any] = {"source": "sim", "scene": args.scene}
    if args.fast:
        camera_update["realtime"] = False
    if args.seed is not None:
        camera_update["seed"] = args.seed
    camera = config.camera.model_copy(update=camera_update)
    button = config.button.model_copy(update={"kind": "sim"})
    config = config.model_copy(update={"camera": camera, "button": button})
    clock: Clock = ManualClock(_scene_start(args.start))
    agent = Agent.from_config(config, clock=clock, simulated=True)
    _install_signals(agent)
    agent.run(duration_s=args.duration)
    status = agent.status()
    summary = {
        key: status[key]
        for key in ("clips_sealed", "clips_failed", "last_clip", "storage", "camera")
    }
    print(json.dumps(summary))
    return 0


def _scene_start(text: str | None) -> datetime:
    """--start as an aware UTC time. Raises ConfigError naming the option."""
    if text is None:
        return datetime.now(UTC)
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--start {text!r} is not an RFC 3339 time") from exc
    if start.tzinfo is None:
        raise ConfigError(f"--start {text!r} has no time zone (add Z for UTC)")
    return start.astimezone(UTC)


def _socket_and_state(args: argparse.Namespace) -> tuple[Path, Path]:
    config = _with_state_dir(load_config(args.config), args.state_dir)
    state = config.agent.state_dir
    return config.agent.control_socket or state / "agent.sock", state


def cmd_ring(args: argparse.Namespace) -> int:
    sock, _ = _socket_and_state(args)
    print(send_command(sock, "ring"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The live status from a running agent, or the last status file it wrote."""
    sock, state = _socket_and_state(args)
    status: dict[str, Any] | None = None
    if sock.exists():
        try:
            status = json.loads(send_command(sock, "status"))
        except (DoorbellError, ValueError) as exc:
            print(f"doorbell-agent: no live answer ({exc}); last status file:", file=sys.stderr)
    if status is None:
        status = read_status(state)
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(render_status(status))
    return 0


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def render_status(status: dict[str, Any]) -> str:
    """The status as a short table for people (`--json` gives every field)."""
    rows: list[tuple[str, str]] = [("device", str(status.get("device", "?")))]
    state = str(status.get("state", "running"))
    rows.append(("state", state + (", recording" if status.get("recording") else "")))
    camera = status.get("camera") or {}
    rows.append(("camera", f"{camera.get('source', '?')}, {camera.get('state', '?')}, "
                           f"{camera.get('frames', 0)} frames, {camera.get('errors', 0)} errors"))
    sealed, failed = status.get("clips_sealed", 0), status.get("clips_failed", 0)
    clips = f"{sealed} sealed, {failed} failed since start"
    last = status.get("last_clip")
    if isinstance(last, dict):
        clips += f"; last {last.get('id', '?')} ({last.get('state', '?')})"
    rows.append(("clips", clips))
    storage = status.get("storage") or {}
    line = (f"{storage.get('clips', '?')} clips, {_size(storage.get('used_bytes'))} used, "
            f"{_size(storage.get('free_bytes'))} free")
    if storage.get("full"):
        line += f"; FULL: {storage.get('reason', '')}"
    rows.append(("storage", line))
    clock = status.get("clock") or {}
    synced = "synchronized" if clock.get("synchronized") else (
        "NOT synchronized (release tokens wait: docs/adr/0009-clock-and-deferral.md)")
    rows.append(("clock", f"{str(clock.get('now', '?'))[:19]} UTC, {synced}"))
    for name, report in sorted((status.get("services") or {}).items()):
        if not isinstance(report, dict):
            continue
        text = str(report.get("state", "?"))
        if "connected" in report:
            text += ", connected" if report["connected"] else ", NOT connected"
        for key in ("link_problem", "reason"):
            if report.get(key):
                text += f": {report[key]}"
        rows.append((name, text))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
