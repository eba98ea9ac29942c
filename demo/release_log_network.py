"""The demo's public release log: one `doorbell-log` and three `doorbell-witness`
processes on loopback under a 2-of-3 tlog-policy (docs/protocol.md section 11,
docs/adr/0014-release-log.md "Wiring").

Each process binds a port of its own choosing and writes its URL to a ready file; the
policy file names the witnesses' URLs (the log reads it to collect cosignatures) and, on
its `log` line, the log's URL (the trust root carries it: the service appends there,
enrolment fetches the first checkpoint there, the owner's monitor reads the tiles there).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from demo.processes import Supervisor
from demo.services import start_and_wait, wait_for
from demo.steps import StepFailed
from protocol.tlog.checkpoint import open_checkpoint
from protocol.tlog.errors import TlogError
from protocol.tlog.policy import parse_policy, witnessed_names

ORIGIN = "log.demo.sealed-doorbell.example/releases"
WITNESSES = 3
QUORUM = 2


@dataclass
class LogNetwork:
    """The log and its witnesses, started under `supervisor` in `root`."""

    root: Path
    bin: Callable[[str], str]
    log_url: str = ""
    log_vkey: str = ""
    witness_urls: list[str] = field(default_factory=list)
    witness_vkeys: list[str] = field(default_factory=list)

    @property
    def policy_file(self) -> Path:
        return self.root / "policy.txt"

    def _init(self, script: str, *args: str) -> str:
        proc = subprocess.run([self.bin(script), "init", *args], capture_output=True,
                              text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise StepFailed(f"{script} init exited with {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc.stdout.strip()

    def _serve(self, supervisor: Supervisor, name: str, argv: list[str]) -> str:
        ready = self.root / f"{name}.ready"
        ready.unlink(missing_ok=True)
        start_and_wait(supervisor, name,
                       [*argv, "--port", "0", "--ready-file", str(ready)],
                       ready.exists, timeout=30.0)
        return ready.read_text().strip()

    def _write_policy(self) -> None:
        lines = [f"log {self.log_vkey}" + (f" {self.log_url}" if self.log_url else "")]
        lines += [f"witness w{i} {vkey} {url}" for i, (vkey, url)
                  in enumerate(zip(self.witness_vkeys, self.witness_urls, strict=True), 1)]
        members = " ".join(f"w{i}" for i in range(1, WITNESSES + 1))
        lines += [f"group witnesses {QUORUM} {members}", "quorum witnesses"]
        tmp = self.policy_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.policy_file)  # the log never reads half a policy

    def start(self, supervisor: Supervisor) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_vkey = self._init("doorbell-log", "--dir", str(self.root / "log"),
                                   "--origin", ORIGIN)
        for i in range(1, WITNESSES + 1):
            directory = str(self.root / f"witness-{i}")
            self.witness_vkeys.append(self._init("doorbell-witness", "--dir", directory,
                                                 "--name", f"w{i}.demo.example"))
            self.witness_urls.append(self._serve(
                supervisor, f"witness-{i}",
                [self.bin("doorbell-witness"), "serve", "--dir", directory,
                 "--log", self.log_vkey]))
        self._write_policy()
        self.log_url = self._serve(
            supervisor, "doorbell-log",
            [self.bin("doorbell-log"), "serve", "--dir", str(self.root / "log"),
             "--policy", str(self.policy_file)])
        self._write_policy()  # now with the log's URL on its `log` line
        wait_for("the empty log's checkpoint to be cosigned by a quorum",
                 lambda: self._checkpoint_status() == 200, timeout=30.0)

    def _checkpoint_status(self) -> int:
        try:
            return httpx.get(f"{self.log_url}/checkpoint", timeout=5).status_code
        except httpx.HTTPError:
            return 0

    def checkpoint(self) -> tuple[int, list[str]]:
        """The log's published checkpoint, checked against the policy: its tree size and
        the witnesses whose cosignatures verify."""
        try:
            response = httpx.get(f"{self.log_url}/checkpoint", timeout=10)
            response.raise_for_status()
            policy = parse_policy(self.policy_file.read_bytes())
            opened = open_checkpoint(response.content,
                                     [policy.logs[0].verifier, *policy.witness_verifiers])
        except (httpx.HTTPError, TlogError) as exc:
            raise StepFailed(f"the log's checkpoint: {exc}") from exc
        names = witnessed_names(policy, (v for v, _ in opened.note.verified))
        return opened.checkpoint.size, sorted(names)
