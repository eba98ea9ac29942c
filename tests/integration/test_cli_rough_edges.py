"""The command lines' rough edges, as a newcomer meets them: a missing --deployment is
named with the fix, output cut short by `| head` is no traceback, and the top-level
--help says what the tool is for (not how its modules register)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.agent import AgentEnv
from tests.fixtures.deployment import TestDeployment

BIN = Path(sys.executable).parent


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_missing_deployment_suggests_the_option(tmp_path: Path) -> None:
    result = _run("cloud-stub", "requests", "list", cwd=tmp_path)
    assert result.returncode == 1
    assert "the current directory is not a deployment directory" in result.stderr
    assert "--deployment DIR" in result.stderr
    assert "Traceback" not in result.stderr
    serve = _run("cloud-stub", "serve", "--deployment", "nowhere", "--no-mqtt", cwd=tmp_path)
    assert serve.returncode == 1
    assert "nowhere is not a deployment directory" in serve.stderr


def test_a_reader_that_leaves_is_no_traceback(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    command = [str(BIN / "cloud-stub"), "requests", "list", "--deployment",
               str(fresh_deployment.layout.root), "--store-url",
               f"sqlite:///{tmp_path / 's.sqlite3'}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    process.stdout.close()  # as `| head` does once it has its lines
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert process.returncode == 141


def test_the_top_level_help_is_for_people(tmp_path: Path) -> None:
    for tool, says in (("cloud-stub", "--deployment DIR"),
                       ("doorbell-agent", "docs/agent-config.md")):
        result = _run(tool, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert "register(subparsers)" not in result.stdout
        assert says in result.stdout


def test_clips_list_has_a_header_says_one_clip_and_survives_head(agent_env: AgentEnv) -> None:
    assert len(agent_env.run("visitor", 24)) == 1
    listed = agent_env.cli("clips", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["CLIP", "START", "(UTC)"]
    assert lines[-1] == "1 clip"
    process = subprocess.Popen(agent_env.cli_command("clips", "list"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err
    assert process.returncode == 141


def test_grammar_of_the_principal_commands(tmp_path: Path) -> None:
    result = _run("cloud-stub", "agencies", "--help", cwd=tmp_path)
    assert "create an agency" in result.stdout
    assert "create a agency" not in result.stdout
