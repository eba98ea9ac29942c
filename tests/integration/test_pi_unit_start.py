"""The agent under its systemd unit's conditions, with the real lgpio and gpiozero.

`import lgpio` creates its notification pipe `.lgd-nfy*` in $LG_WD, or else in the
working directory, at import time. A system service runs in `/`, which its user cannot
write: the import fails, gpiozero falls back to factories this unit's DevicePolicy
denies, and the button never starts. These tests take the unit's own `User=`-like
conditions from deploy/systemd/doorbell-agent.service (WorkingDirectory, Environment,
UMask; RuntimeDirectory and StateDirectory mapped onto temporary directories) and run
real lgpio (from PyPI) and real gpiozero as a non-root user: `nobody` when the tests run
as root, else the tests' own user.

Not applied here (no systemd as PID 1 on a build machine): DevicePolicy, PrivateTmp,
ProtectSystem and the syscall filter; `make pi-check` runs the installed agent as the
`doorbell` user under qemu, docs/raspberry-pi.md says what each check proves.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from tests.fixtures.vault import make_age_key

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "doorbell-agent.service"
VENV_BIN = Path(sys.executable).parent
AS_ROOT = os.geteuid() == 0
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def service_python(code: str) -> list[str]:
    """`python -c code` runnable by the service user with this venv's packages.

    The venv's interpreter may sit where `nobody` cannot reach it (a pyenv build under
    /root); then the system's python3 of the same minor version runs with this venv's
    site-packages added, which holds the same wheels (same CPython ABI)."""
    interpreter = str(VENV_BIN / "python")
    if AS_ROOT and not _readable(ROOT / "device" / "__init__.py"):
        pytest.skip(f"{ROOT} is not readable by nobody: the service user cannot run it")
    if not AS_ROOT or _reachable(interpreter):
        return [interpreter, "-c", code]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/bin")
    if system is None:
        pytest.skip("no system python of this version that a non-root user can run")
    packages = [p for p in site.getsitepackages() if p.startswith(sys.prefix)]
    prelude = "".join(f"import site; site.addsitedir({p!r})\n" for p in packages)
    return [system, "-c", prelude + code]


def _reachable(path: str) -> bool:
    check = [RUNUSER, "-u", "nobody", "--", "test", "-x", path]
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def _readable(path: Path) -> bool:
    check = [RUNUSER, "-u", "nobody", "--", "test", "-r", str(path)]
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def need_lgpio() -> None:
    # Looked up, never imported here: importing lgpio makes its pipe in this directory.
    if importlib.util.find_spec("lgpio") is None:
        pytest.skip("lgpio from PyPI is a dev dependency: run make setup")


def unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


@dataclass
class UnitConditions:
    """The unit's working directory and environment, with its directories mapped."""

    root: Path  # stands for / (only the unit's own directories exist under it)
    cwd: Path
    env: dict[str, str]
    umask: str
    mapped: dict[str, Path]

    def command(self, *argv: str) -> list[str]:
        """argv as the unit's user would run it: non-root, its umask, only its env."""
        inner = ["sh", "-c", f'umask {self.umask} && exec "$@"', "sh", *argv]
        assignments = [f"{k}={v}" for k, v in self.env.items()]
        if AS_ROOT:
            return [RUNUSER, "-u", "nobody", "--", "env", "-i", *assignments, *inner]
        return ["env", "-i", *assignments, *inner]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def give_to_service_user(path: Path) -> None:
    if AS_ROOT:
        shutil.chown(path, "nobody")


@pytest.fixture
def unit_conditions() -> Iterator[UnitConditions]:
    d = unit_directives()
    top = Path(tempfile.mkdtemp(prefix="doorbell-unit-"))
    top.chmod(0o755)  # the non-root user must reach it (pytest's tmp_path is 0700 root)
    mapped: dict[str, Path] = {}
    for key, base in (("StateDirectory", "/var/lib"), ("RuntimeDirectory", "/run")):
        for name in d.get(key, []):
            real = f"{base}/{name}"
            here = top / real.strip("/").replace("/", "_")
            here.mkdir(mode=0o700)
            give_to_service_user(here)
            mapped[real] = here

    def local(path: str) -> str:
        for real, here in mapped.items():
            if path == real or path.startswith(real + "/"):
                return str(here) + path[len(real) :]
        return path

    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for line in d.get("Environment", []):
        key, _, value = line.partition("=")
        env[key] = local(value)
    cwd = Path(local(d.get("WorkingDirectory", ["/"])[-1]))
    umask = d.get("UMask", ["0022"])[-1]
    yield UnitConditions(root=top, cwd=cwd, env=env, umask=umask, mapped=mapped)
    shutil.rmtree(top, ignore_errors=True)


def test_the_unit_gives_lgpio_a_writable_directory_for_its_pipe() -> None:
    d = unit_directives()
    assert d.get("RuntimeDirectory") == ["doorbell"]
    assert d.get("WorkingDirectory") == ["/run/doorbell"]
    assert "LG_WD=/run/doorbell" in d.get("Environment", [])


def test_the_agent_does_not_wait_for_the_network_to_start_recording() -> None:
    d = unit_directives()
    for key in ("Wants", "After", "Requires", "BindsTo"):
        for value in d.get(key, []):
            assert "network-online.target" not in value, f"{key}={value}"
            assert "time-sync.target" not in value, f"{key}={value}"


def test_real_lgpio_imports_under_the_units_conditions(unit_conditions: UnitConditions) -> None:
    need_lgpio()
    result = unit_conditions.run(
        *service_python("import lgpio, os; print(os.getcwd())")
    )
    assert result.returncode == 0, result.stderr
    runtime = unit_conditions.mapped["/run/doorbell"]
    assert result.stdout.strip() == str(runtime)
    pipes = [p.name for p in runtime.iterdir()]
    assert any(name.startswith(".lgd-nfy") for name in pipes), pipes


def test_real_lgpio_fails_in_the_root_directory_as_a_service_user() -> None:
    # The condition the unit used to leave the agent in: this check can fail.
    need_lgpio()
    if not AS_ROOT and os.access("/", os.W_OK):
        pytest.skip("this user can write /: the failure cannot be shown")
    argv = service_python("import lgpio")
    if AS_ROOT:
        argv = [RUNUSER, "-u", "nobody", "--", "env", "-i", "PATH=/usr/bin:/bin", *argv]
    result = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert ".lgd-nfy" in result.stderr


BUTTON_START = """
import sys
from datetime import UTC, datetime
from device.button.base import ButtonError
from device.button.factory import make_button
from device.config import ButtonSettings
from device.clock import ManualClock
button = make_button(ButtonSettings(kind="gpio"), ManualClock(datetime(2026, 5, 4, tzinfo=UTC)))
try:
    button.start(lambda at: None)
except ButtonError as exc:
    print(exc)
    sys.exit(3)
"""


def test_the_button_names_lgpios_pipe_when_the_directory_is_not_writable() -> None:
    need_lgpio()
    if not AS_ROOT and os.access("/", os.W_OK):
        pytest.skip("this user can write /: the failure cannot be shown")
    argv = service_python(BUTTON_START)
    if AS_ROOT:
        argv = [RUNUSER, "-u", "nobody", "--", "env", "-i", "PATH=/usr/bin:/bin", *argv]
    result = subprocess.run(
        argv, cwd="/", capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 3, result.stderr
    assert "lgpio cannot create its notification pipe in /" in result.stdout
    assert "LG_WD" in result.stdout


def test_under_the_unit_the_button_gets_past_lgpio_to_the_header(
    unit_conditions: UnitConditions,
) -> None:
    # With the unit's directory lgpio imports; what stops the button on this machine
    # is the missing GPIO header, and the message says so instead of blaming the pipe.
    need_lgpio()
    if list(Path("/dev").glob("gpiochip*")):
        pytest.skip("this machine has a GPIO character device")
    result = unit_conditions.run(*service_python(BUTTON_START))
    assert result.returncode == 3, result.stderr
    assert "notification pipe" not in result.stdout
    assert "GPIO" in result.stdout


@pytest.mark.slow
def test_the_agent_reaches_ready_as_a_service_user_with_a_gpio_button(
    unit_conditions: UnitConditions,
) -> None:
    # gpiozero's real pin factories need /dev/gpiochip*, which a build machine has not:
    # the button runs on gpiozero's own MockFactory, everything else as the unit has it.
    state = unit_conditions.mapped["/var/lib/doorbell"]
    keys = unit_conditions.root / "keys"
    keys.mkdir()
    owner, escrow = make_age_key(keys, "owner"), make_age_key(keys, "escrow")
    config = unit_conditions.root / "agent.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "agent": {"state_dir": str(state), "device_id": "porch"},
                "camera": {
                    "source": "sim",
                    "scene": "empty",
                    "realtime": True,
                    "width": 320,
                    "height": 240,
                    "fps": 15,
                    "lores_width": 160,
                    "lores_height": 120,
                },
                "button": {"kind": "gpio", "pin": 17},
                "keys": {
                    "owner_recipient": owner.recipient,
                    "escrow_recipient": escrow.recipient,
                },
            }
        ),
        encoding="utf-8",
    )
    config.chmod(0o644)
    notify_dir = unit_conditions.root / "notify"
    notify_dir.mkdir(mode=0o755)
    address = notify_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    address.chmod(0o777)
    sock.settimeout(0.5)
    unit_conditions.env["NOTIFY_SOCKET"] = str(address)
    unit_conditions.env["GPIOZERO_PIN_FACTORY"] = "mock"
    agent = service_python("import sys; from device.cli import main; sys.exit(main())")
    proc = subprocess.Popen(
        unit_conditions.command(*agent, "--config", str(config), "run"),
        cwd=unit_conditions.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ready:
            try:
                data = sock.recv(4096).decode("utf-8")
            except TimeoutError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                continue
            if "READY=1" in data.split("\n"):
                ready = data
    finally:
        proc.terminate()
        stderr = proc.communicate(timeout=30)[1]
        sock.close()
    assert ready, stderr
    assert "porch: watching" in ready
    mode = (state / "agent.sock").stat().st_mode & 0o777 if (state / "agent.sock").exists() else 0
    assert mode & 0o077 == 0  # the unit's UMask reached the agent's files
