"""The agent loads only what its configuration uses (docs/adr/0019-agent-memory-and-
uplink-benchmarks.md).

Each case runs in a fresh interpreter and reports which of the heavy modules ended up in
`sys.modules`: `doorbell-agent status` loads no video stack, an agent with a `pi`
camera (tests/standins/picamera2) never loads the software encoder nor OpenCV, a
disabled Home Assistant bridge loads neither the bridge nor a paho client, and neither
the configuration nor `doorbell-agent run` loads pydantic (device/config_schema.py), the
daemon loads NumPy with OpenBLAS asked for one thread and runs without transparent huge
pages (device/malloc.py). A
sim agent is the control: it must load the software encoder, or the check itself is
broken; the cloud stub's configuration, still pydantic, is the control for pydantic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentEnv

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "standins"
WATCHED = (
    "cv2",
    "av",
    "numpy",
    "paho",
    "device.camera.h264",
    "device.camera.sim",
    "device.homeassistant",
    "device.agent",
    "pydantic",
)

REPORT = """
import json, sys
print("LOADED " + json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))
"""

RUN_STATUS = """
import sys
from device.cli import main
code = main(["--config", sys.argv[1], "status"])
assert code == 0, code
"""

RUN_AGENT = """
import sys
from pathlib import Path
from device.agent import Agent
from device.config import load_config
from device.clock import KernelClock
agent = Agent.from_config(load_config(Path(sys.argv[1])), clock=KernelClock())
agent.run(duration_s=1.0)
assert agent.status()["camera"]["frames"] > 0, agent.status()
"""


LOAD_CONFIG = """
import sys
from pathlib import Path
import device.cli, device.cli.agent, device.compose
from device.config import load_config
load_config(Path(sys.argv[1]))
"""

LOAD_CLOUD_CONFIG = """
import cloud_stub.config
"""

# `doorbell-agent run` as systemd starts it, stopped by SIGTERM once it has recorded a
# while (its store opens after the first frame, in a thread of its own).
RUN_DAEMON = """
import os, signal, sys, threading
from device.cli import main
threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
code = main(["--config", sys.argv[1], "run"])
assert code == 0, code
"""


def loaded_modules(script: str, config: Path, *, extra_path: Path | None = None) -> set[str]:
    """Run `script` (then the report) in a fresh interpreter; the watched modules it loaded."""
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path is not None else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    result = subprocess.run(
        [sys.executable, "-c", script + REPORT.format(watched=WATCHED), str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("LOADED "))
    return set(json.loads(line.removeprefix("LOADED ")))


def test_status_loads_no_video_stack(agent_env: AgentEnv) -> None:
    agent_env.state_dir.mkdir(parents=True, exist_ok=True)
    (agent_env.state_dir / "status.json").write_text(json.dumps({"v": 1, "state": "stopped"}))
    loaded = loaded_modules(RUN_STATUS, agent_env.config_path)
    assert loaded.isdisjoint({"cv2", "av", "numpy", "device.camera.h264", "device.agent"}), loaded


@pytest.mark.slow
def test_a_pi_agent_loads_no_software_encoder_no_opencv_no_paho(agent_env: AgentEnv) -> None:
    agent_env.write_config(
        camera={"source": "pi", "width": 320, "height": 240, "fps": 10,
                "lores_width": 160, "lores_height": 120},
        home_assistant={"enabled": False},
    )
    loaded = loaded_modules(RUN_AGENT, agent_env.config_path, extra_path=STANDINS)
    assert "av" in loaded  # the clip muxer: the agent really recorded
    assert loaded.isdisjoint(
        {"device.camera.h264", "device.camera.sim", "cv2", "paho", "device.homeassistant"}
    ), loaded


@pytest.mark.slow
def test_control_a_sim_agent_loads_the_software_encoder(agent_env: AgentEnv) -> None:
    loaded = loaded_modules(RUN_AGENT, agent_env.config_path)
    assert {"device.camera.h264", "device.camera.sim", "av", "numpy"} <= loaded, loaded
    assert "cv2" not in loaded, loaded


def test_the_configuration_loads_no_pydantic(agent_env: AgentEnv) -> None:
    assert "pydantic" not in loaded_modules(LOAD_CONFIG, agent_env.config_path)
    assert "pydantic" in loaded_modules(LOAD_CLOUD_CONFIG, agent_env.config_path)  # control


@pytest.mark.slow
def test_the_daemon_loads_no_pydantic(agent_env: AgentEnv) -> None:
    loaded = loaded_modules(RUN_DAEMON, agent_env.config_path)
    assert {"device.agent", "device.camera.sim", "av"} <= loaded, loaded  # it really ran
    assert "pydantic" not in loaded, loaded


# Which OPENBLAS_NUM_THREADS NumPy found when it was first imported (OpenBLAS reads it
# as it loads); the daemon's command sets it before it imports the agent.
BLAS_SPY = """
import os, sys
seen = []
class Spy:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_NUM_THREADS"))
        return None
sys.meta_path.insert(0, Spy)
"""


@pytest.mark.slow
def test_the_daemon_loads_numpy_with_one_openblas_thread(agent_env: AgentEnv) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT)
    script = BLAS_SPY + RUN_DAEMON + "print('BLAS', seen)\n"
    result = subprocess.run(
        [sys.executable, "-c", script, str(agent_env.config_path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "BLAS ['1']" in result.stdout.splitlines(), result.stdout


@pytest.mark.slow
def test_the_daemon_runs_without_transparent_huge_pages(agent_env: AgentEnv) -> None:
    if "THP_enabled" not in Path("/proc/self/status").read_text():
        pytest.skip("this kernel does not report THP_enabled")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = RUN_DAEMON + (
        "print(next(l for l in open('/proc/self/status') if l.startswith('THP_enabled')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(agent_env.config_path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "THP_enabled:\t0" in result.stdout.splitlines(), result.stdout
