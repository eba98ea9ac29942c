"""The README's by-hand path, followed as a newcomer would: every ```sh block of its
"A first hour, by hand" section, in order, in one empty directory, with nothing but
what the README shows (operator init, broker, serve, enrolment, the agent on the
simulated camera, warrant, request with curl-shaped JSON, approval, download,
verification, owner notice).

The only liberties a machine needs: free loopback ports replace 8883 and 8080 (shared
machines), HOME is the test's directory, blocks whose title says "keeps running" are
left running in their own process group (stopped at the end), and blocks titled
"wait, repeat until ..." are repeated until they exit 0. When the README and the code
drift apart, a block fails here, and the failure shows the block, its output and the
daemons' logs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- by-hand path:"
END = "<!-- by-hand path ends -->"
BLOCK = re.compile(r"^```sh\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
WAIT_S = {"clip": 240.0, "default": 150.0}
LOGS = ("broker.log", "cloud.log", "agent.log")


@dataclass(frozen=True)
class Step:
    title: str
    script: str

    @property
    def keeps_running(self) -> bool:
        return "keeps running" in self.title

    @property
    def repeats(self) -> bool:
        return self.title.startswith("wait, repeat until")


def readme_steps(text: str) -> list[Step]:
    """The ```sh blocks of the by-hand section, each titled by its '# step:' line."""
    start, end = text.index(START), text.index(END)
    steps = []
    for match in BLOCK.finditer(text[start:end]):
        script = match.group(1)
        first = script.splitlines()[0]
        assert first.startswith("# step: "), f"a by-hand block without a step title: {first}"
        steps.append(Step(first.removeprefix("# step: ").strip(), script))
    return steps


def test_the_readme_names_each_step_once() -> None:
    titles = [s.title.split(" ")[0] for s in readme_steps((ROOT / "README.md").read_text())]
    for needed in ("operator", "keys-off-host", "broker", "serve", "agent-config", "agent",
                   "warrant", "request", "review", "approval", "evidence", "owner"):
        assert titles.count(needed) == 1, (needed, titles)


class Walk:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.groups: list[int] = []
        self.outputs: dict[str, str] = {}

    def logs(self) -> str:
        parts = []
        for name in LOGS:
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name} (last 40 lines)\n"
                             + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(parts)

    def run(self, step: Step) -> None:
        if step.keeps_running:
            process = subprocess.Popen(["bash", "-c", step.script], cwd=self.workdir,
                                       env=self.env, start_new_session=True)
            self.groups.append(process.pid)
            process.wait(timeout=30)  # the shell returns once the job is in the background
            return
        deadline = time.monotonic() + (WAIT_S["clip"] if "clip" in step.title
                                       else WAIT_S["default"])
        while True:
            result = subprocess.run(["bash", "-eo", "pipefail", "-c", step.script],
                                    cwd=self.workdir, env=self.env, capture_output=True,
                                    text=True, timeout=300, check=False)
            if result.returncode == 0:
                self.outputs[step.title.split(" ")[0]] = result.stdout + result.stderr
                return
            if not step.repeats or time.monotonic() > deadline:
                raise AssertionError(
                    f"README step {step.title!r} exited {result.returncode}\n{step.script}\n"
                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n{self.logs()}"
                )
            time.sleep(1.0)

    def stop(self) -> None:
        for group in reversed(self.groups):
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 30
        for group in reversed(self.groups):
            while time.monotonic() < deadline:
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    workdir = tmp_path / "by-hand"
    workdir.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    w = Walk(workdir, env)
    try:
        yield w
    finally:
        w.stop()


def test_the_readme_by_hand_path(walk: Walk) -> None:
    broker_port, api_port = free_port(), free_port()
    text = (ROOT / "README.md").read_text()
    for step in readme_steps(text):
        script = step.script.replace("8883", str(broker_port)).replace("8080", str(api_port))
        walk.run(Step(step.title, script))

    out = walk.outputs
    assert "pending_review" in out["request"]
    for shown in ("2026-MJ-7", "Hon. Ada Marsh", "Det. Sam Ortiz", "MPD-2026-1187"):
        assert shown in out["review"], out["review"]
    assert "is now released" in out["approval"], out["approval"]
    assert "verified: 1 clip under 1 token(s)" in out["evidence"], out["evidence"]
    clips = list((walk.workdir / "evidence").glob("*/*.mp4"))
    assert len(clips) == 1
    assert clips[0].read_bytes()[4:8] == b"ftyp"
    assert "NEW warrant" in out["owner"], out["owner"]
    assert "docket 2026-MJ-7" in out["owner"], out["owner"]
    for name in LOGS:
        assert "Traceback" not in (walk.workdir / name).read_text(), walk.logs()
