"""The release log on its own (`make demo-release-log`, ADR 0014): real processes, real
HTTP, real keys.

Three `doorbell-witness` processes and one `doorbell-log` start on loopback under a
2-of-3 tlog-policy. A warrant token is signed, its statement logged through the service's
`ReleaseLogPublisher`, cosigned by the witnesses, and checked by the doorbell's
`LogGate`; `doorbell-owner monitor` finds the entry over the tiles; a checkpoint of
another history signed with the log's own key but never witnessed is refused
(`witness_quorum`); with two witnesses down a release waits, and goes through, logged
once, when one returns. The service and the agent use the log when the trust root
carries a log policy (ADR 0014, "Wiring"); `make demo` runs that path with its own log
and witnesses, and `tests/e2e/test_release_log_e2e.py` tests it end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.services.release_log import NotWitnessedYet, ReleaseLogPublisher
from device.release.log_gate import LogGate
from owner_app.cli import main as owner_main
from protocol.tlog.bundle import build_bundle, parse_bundle
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import LogRejected
from protocol.tlog.merkle import MemoryTree, leaf_hash
from protocol.tlog.note import NoteSignature, format_note, parse_note, parse_skey
from protocol.tlog.policy import parse_policy
from protocol.tlog.statement import device_tag
from protocol.token import CaseRef, ReleaseClaims, Window, seal_keys_for_device, sign_token
from release_log import log_cli, witness_cli
from release_log.client import LogClient

ORIGIN = "log.demo.sealed-doorbell.example/releases"


def _vkey(main: object, *args: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert callable(main)
        assert main(["init", *args]) == 0
    return out.getvalue().strip()


class Proc:
    def __init__(self, name: str, argv: list[str], work: Path) -> None:
        self.name, self.argv, self.work = name, argv, work
        self.popen: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        ready = self.work / f"{self.name}.ready"
        ready.unlink(missing_ok=True)
        with (self.work / f"{self.name}.log").open("ab") as log:
            self.popen = subprocess.Popen(
                [*self.argv, "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start; see {self.work}/{self.name}.log")
            time.sleep(0.05)
        self.url = ready.read_text().strip()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(timeout=10)
        self.popen = None


def _token(device: str, seq: int) -> tuple[bytes, ReleaseClaims, list[Ed25519PrivateKey]]:
    signers = [Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()]
    now = datetime.now(UTC).replace(microsecond=0)
    iat = int(now.timestamp())
    claims = ReleaseClaims(
        v=1,
        iss="cloud-stub",
        aud=device,
        jti=f"demo-{seq}",
        seq=seq,
        iat=iat,
        nbf=iat,
        exp=iat + 3600,
        basis="warrant",
        case=CaseRef("req-demo", "2026-MJ-0042", "demo-district-court", "ab" * 32),
        window=Window(now - timedelta(hours=3), now - timedelta(hours=1)),
        recipient=str(pyrage.x25519.Identity.generate().to_public()),
        keys=seal_keys_for_device(
            {f"{iat}-0a1b2c3d": str(pyrage.x25519.Identity.generate())},
            str(pyrage.x25519.Identity.generate().to_public()),
        ),
        upload="http://127.0.0.1:8080/v1/evidence/demo",
    )
    return sign_token(claims, signers), claims, signers


def run(work: Path) -> int:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    say = print
    log_vkey = _vkey(log_cli.main, "--dir", str(work / "log"), "--origin", ORIGIN)
    py = sys.executable
    witnesses, vkeys = [], []
    for i in (1, 2, 3):
        vkeys.append(
            _vkey(witness_cli.main, "--dir", str(work / f"w{i}"), "--name", f"w{i}.demo.example")
        )
        witnesses.append(
            Proc(
                f"witness-{i}",
                [
                    py,
                    "-m",
                    "release_log.witness_cli",
                    "serve",
                    "--dir",
                    str(work / f"w{i}"),
                    "--log",
                    log_vkey,
                    "--port",
                    "0",
                ],
                work,
            )
        )
    policy = work / "policy.txt"

    def write_policy(log_url: str = "") -> None:
        lines = [f"log {log_vkey}" + (f" {log_url}" if log_url else "")]
        lines += [f"witness w{i} {vkeys[i - 1]} {w.url}" for i, w in enumerate(witnesses, 1)]
        lines += ["group witnesses 2 w1 w2 w3", "quorum witnesses"]
        tmp = policy.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(policy)

    log = Proc(
        "log",
        [
            py,
            "-m",
            "release_log.log_cli",
            "serve",
            "--dir",
            str(work / "log"),
            "--policy",
            str(policy),
            "--port",
            "0",
        ],
        work,
    )
    try:
        for w in witnesses:
            w.start()
        write_policy()
        log.start()
        say(f"1. log {ORIGIN} at {log.url}; witnesses {', '.join(w.url for w in witnesses)}")
        identity = Ed25519PrivateKey.generate()
        gate = LogGate(
            work / "device-state", parse_policy(policy.read_bytes()), identity.public_key()
        )
        publisher = ReleaseLogPublisher(LogClient(log.url), wait_s=20)
        deadline = time.monotonic() + 20
        while httpx.get(log.url + "/checkpoint", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the empty log got no quorum")
            time.sleep(0.1)
        gate.seed(httpx.get(log.url + "/checkpoint", timeout=5).content)
        say("2. enrolment: the doorbell stores the log's cosigned checkpoint (size 0)")

        token, claims, _ = _token("front-door", 1)
        bundle = publisher.log_token(
            token, claims, identity.public_key(), device_log_size=gate.status()["log_size"]
        )
        note = parse_note(parse_bundle(bundle).proof.checkpoint)
        say(
            f"3. the warrant's statement is entry 0; checkpoint signed by the log and "
            f"cosigned by {len(note.signatures) - 1} witnesses"
        )
        verdict = gate.check(token, bundle)
        say(
            f"4. the doorbell checks the proof: logged at {verdict.index}, witnesses "
            f"{', '.join(sorted(verdict.witnesses))}; stored checkpoint now size "
            f"{gate.status()['log_size']}"
        )

        bundle_dir = work / "owner-bundle"
        (bundle_dir / "release-log").mkdir(parents=True)
        write_policy(log.url)
        shutil.copy(policy, bundle_dir / "release-log" / "policy.txt")
        (bundle_dir / "release-log" / "device-tag").write_text(
            device_tag(identity.public_key()) + "\n"
        )
        out, err = io.StringIO(), io.StringIO()
        code = owner_main(
            ["--bundle", str(bundle_dir), "monitor", "--state", str(work / "owner-state")],
            out=out,
            err=err,
        )
        say(
            f"5. doorbell-owner monitor (exit {code}):\n   "
            + "\n   ".join(out.getvalue().strip().splitlines())
        )

        log_key = parse_skey((work / "log" / "log.key").read_text().strip())
        fork = MemoryTree([leaf_hash(b"another history %d" % i) for i in range(3)])
        cp = Checkpoint(ORIGIN, 3, fork.root())
        forked_note = format_note(
            cp.text, [NoteSignature(log_key.name, log_key.key_id, log_key.sign(cp.text))]
        )
        stolen = build_bundle(
            fork,
            entry=b"another history 0",
            index=0,
            size=3,
            checkpoint_note=forked_note,
            stored_size=1,
        ).encode()
        try:
            gate.check(token, stolen)
        except LogRejected as exc:
            say(
                f"6. a checkpoint signed with the log's own key but without witnesses: "
                f"refused, {exc.code.value}"
            )

        for w in witnesses[:2]:
            w.stop()
        token2, claims2, _ = _token("front-door", 2)
        quick = ReleaseLogPublisher(LogClient(log.url), wait_s=1)
        try:
            quick.log_token(token2, claims2, identity.public_key(), device_log_size=1)
        except NotWitnessedYet:
            say("7. two witnesses down: the next release is logged but waits for a quorum")
        witnesses[0].start()
        write_policy(log.url)
        bundle2 = publisher.log_token(token2, claims2, identity.public_key(), device_log_size=1)
        verdict2 = gate.check(token2, bundle2)
        say(
            f"8. one witness back: the waiting release goes through, entry {verdict2.index}, "
            f"logged once"
        )
        digest = hashlib.sha256(token2).hexdigest()[:16]
        say(f"   (token sha256 {digest}...; everything is in {work})")
    finally:
        log.stop()
        for w in witnesses:
            w.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.release_log")
    parser.add_argument("--out", type=Path, default=Path("demo-out/release-log"))
    return run(parser.parse_args(argv).out)


if __name__ == "__main__":
    raise SystemExit(main())
