"""The demonstration itself: seven steps over real processes, real TLS MQTT and real HTTP.

Every side effect goes through a real command (`cloud-stub`, `doorbell-agent`, `age`,
`ffprobe`, `mosquitto`) or the cloud stub's HTTP API, exactly as an operator, an agency
and an owner would use them. Nothing here reaches into another process's state.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

from demo.agency import AGENCY_FIELDS, ApiClient, refusal_codes, submit
from demo.checks import probe_video, scan_for_plaintext
from demo.processes import Supervisor
from demo.release_log_network import ORIGIN, QUORUM, WITNESSES, LogNetwork
from demo.services import (
    free_port,
    http_ok,
    mosquitto_binary,
    start_and_wait,
    tls_handshake_ok,
    wait_for,
)
from demo.steps import Progress, Step, StepFailed
from protocol.bundle import BundleLayout, DeploymentLayout, OwnerBundleLayout
from protocol.keys import public_key_from_hex
from protocol.manifest import verify_manifest

DEVICE_ID = "front-door"
COURT_ID = "demo-district-court"
MARKER = ".sealed-doorbell-demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    out: Path
    width: int = 1280
    height: int = 720
    fps: int = 30
    visitor_s: float = 32.0  # the visit ends at 19.5 s; 10 s post-roll after it
    passerby_s: float = 21.0  # the crossing ends at 9 s; 10 s post-roll after it
    post_roll_s: float = 10.0


def _bin(name: str) -> str:
    """The console script installed beside this interpreter (the project's venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run(argv: list[str], *, what: str, timeout: float = 120.0,
         env: dict[str, str] | None = None) -> str:
    """Run a command to completion; StepFailed with its output when it fails."""
    import os

    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"{what} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-600:]
        raise StepFailed(f"{what} exited with {proc.returncode}: {detail}")
    return proc.stdout


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def prepare_out_dir(out: Path) -> None:
    """Make `out` a fresh, empty demo directory. Refuses to delete a directory that is
    not a previous demonstration's (no marker file) and is not empty."""
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise StepFailed(
                f"{out} exists, is not empty and is not a previous demo's output; "
                "choose another --out or remove it"
            )
        subprocess.run(["rm", "-rf", "--", str(out)], check=True)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `make demo`; deleted and rewritten by the next run\n")


@dataclass
class Demo:
    options: DemoOptions
    progress: Progress
    supervisor: Supervisor
    report: dict[str, Any] = field(default_factory=dict)
    broker_port: int = 0
    api_port: int = 0
    clients: dict[str, ApiClient] = field(default_factory=dict)
    agency_recipient: str = ""
    agency_identity: Path = Path()
    clips: list[dict[str, Any]] = field(default_factory=list)
    warrant_request_id: str = ""
    warrant_jti: str = ""
    reviewer_env: dict[str, str] = field(default_factory=dict)
    release_log: LogNetwork = field(init=False)

    def __post_init__(self) -> None:
        self.reviewer_env["XDG_CONFIG_HOME"] = str(self.reviewer_home)
        self.release_log = LogNetwork(self.out / "release-log", _bin)

    # -- paths ---------------------------------------------------------------------

    @property
    def out(self) -> Path:
        return self.options.out.resolve()

    @property
    def layout(self) -> DeploymentLayout:
        return DeploymentLayout(self.out / "deployment")

    @property
    def bundle(self) -> BundleLayout:
        return BundleLayout(self.out / "device-bundle")

    @property
    def owner_bundle(self) -> OwnerBundleLayout:
        return OwnerBundleLayout(self.out / "owner-bundle")

    @property
    def state_dir(self) -> Path:
        return self.out / "device-state"

    @property
    def agent_config(self) -> Path:
        return self.out / "agent.toml"

    @property
    def owner_key(self) -> Path:
        return self.out / "owner.key"

    @property
    def off_host(self) -> Path:
        """Where the keys that must not be on the service host go (offline, a court, a
        reviewer's machine)."""
        path = self.out / "off-host"
        path.mkdir(exist_ok=True)
        return path

    @property
    def reviewer_home(self) -> Path:
        return self.out / "reviewer-machine"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, role: str) -> ApiClient:
        """The API client of one principal created at set-up (agency, reviewer, admin)."""
        try:
            return self.clients[role]
        except KeyError:
            raise StepFailed(f"set-up did not create the {role} principal") from None

    def _say(self, line: str) -> None:
        self.progress.say(line)

    def _agent(self, *args: str) -> list[str]:
        return [_bin("doorbell-agent"), "--config", str(self.agent_config), *args]

    def _cloud(self, *args: str) -> list[str]:
        return [_bin("cloud-stub"), *args, "--deployment", str(self.layout.root)]

    # -- step 0: the deployment and the running services -------------------------------

    def set_up(self) -> None:
        self.broker_port, self.api_port = free_port(), free_port()
        _run(
            [
                _bin("cloud-stub"),
                "init",
                str(self.layout.root),
                "--broker-port",
                str(self.broker_port),
                "--api-url",
                self.api_url,
                "--broker-user",
                getpass.getuser(),
            ],
            what="cloud-stub init",
        )
        self._say(f"deployment (CA, signer keys, trust root, broker config) in {self.layout.root}")
        refused = subprocess.run(
            [_bin("cloud-stub"), "serve", "--deployment", str(self.layout.root), "--no-mqtt",
             "--port", "9"], capture_output=True, text=True, timeout=120, check=False)
        if refused.returncode != 1 or "refusing to start" not in refused.stderr:
            raise StepFailed(f"serve started while it could read the root keys: {refused}")
        first = next(line for line in refused.stderr.splitlines() if "refusing to start" in line)
        self._say("`cloud-stub serve` refuses to start: "
                  + first.split("refusing to start: ", 1)[1][:110] + "...")
        for directory in self.layout.off_host_dirs:
            directory.rename(self.off_host / directory.name)
        self._say(f"root keys, the test court's and test reviewers' keys moved off the service "
                  f"host to {self.off_host}")

        self.release_log.start(self.supervisor)
        self._say(f"release log {ORIGIN} on {self.release_log.log_url}; witnesses "
                  f"{', '.join(self.release_log.witness_urls)} (any {QUORUM} of {WITNESSES} "
                  f"must cosign); policy in {self.release_log.policy_file}")

        _run(["age-keygen", "-o", str(self.owner_key)], what="age-keygen (owner key)")
        owner_recipient = _run(
            ["age-keygen", "-y", str(self.owner_key)], what="age-keygen -y"
        ).strip()
        self._say(
            f"owner key {self.owner_key} (the device only ever sees {owner_recipient[:16]}...)"
        )

        agency = json.loads(
            _run(self._cloud("agencies", "add", "metro-police", "--json"), what="agencies add")
        )
        keygen = _run([_bin("doorbell-review"), "keygen"], what="doorbell-review keygen",
                      env=self.reviewer_env)
        public = next(line.split()[-1] for line in keygen.splitlines()
                      if line.startswith("public key:"))
        self._say(f"reviewer rev-alice made her signing key on her own machine "
                  f"({self.reviewer_home}); public key {public[:16]}...")
        reviewer = json.loads(
            _run(
                self._cloud("reviewers", "add", "rev-alice", "--org", "court-liaison",
                            "--public-key", public, "--json"),
                what="reviewers add",
            )
        )
        _run(self._cloud("root", "log-policy", str(self.release_log.policy_file)),
             what="cloud-stub root log-policy")
        _run(self._cloud("root", "sign", "--keys", str(self.off_host / "offline-root")),
             what="cloud-stub root sign")
        self._say("trust root v2 (policy key, reviewer rev-alice, the demo court, the release "
                  "log's policy) signed with the offline root keys: the v1 root's threshold "
                  "signs its successor")
        self.layout.signer_key("review").unlink()
        self._say("v1's review key, which signed beside the policy key on this host, is "
                  "deleted: under v2 it counts for no one (serve refuses to start beside it)")
        _run(
            [
                _bin("cloud-stub"),
                "devices",
                "enroll",
                DEVICE_ID,
                "--owner-recipient",
                owner_recipient,
                "--deployment",
                str(self.layout.root),
                "--out",
                str(self.bundle.root),
                "--owner-out",
                str(self.owner_bundle.root),
                "--install-dir",
                str(self.bundle.root),
            ],
            what="cloud-stub devices enroll",
        )
        self._write_agent_config()
        self._say(f"device {DEVICE_ID} enrolled under root v2; bundle in {self.bundle.root}, "
                  "with the log's cosigned checkpoint (its first, stored before any token)")
        # The broker starts below and reads the ACL enrolment rewrote: no reload needed.
        self._say(
            f"owner credential (MQTT user owner.{DEVICE_ID}: reads {DEVICE_ID}'s notice and "
            f"status only) in {self.owner_bundle.root}, with release-log/policy.txt and "
            "release-log/device-tag for the owner's monitor"
        )

        admin = json.loads(
            _run(
                self._cloud("admins", "add", "ops", "--org", "operator", "--json"),
                what="admins add",
            )
        )
        self.clients = {
            "agency": ApiClient(self.api_url, agency["api_key"]),
            "reviewer": ApiClient(self.api_url, reviewer["api_key"]),
            "admin": ApiClient(self.api_url, admin["api_key"]),
        }
        self.agency_recipient = agency["recipient"]
        self.agency_identity = Path(agency["identity_file"])
        self.reviewer_env["DOORBELL_REVIEW_API"] = self.api_url
        self.reviewer_env["DOORBELL_REVIEW_API_KEY"] = reviewer["api_key"]
        self._say("agency metro-police, reviewer rev-alice (court-liaison) and admin ops created")

        start_and_wait(
            self.supervisor,
            "mosquitto",
            [mosquitto_binary(), "-c", str(self.layout.root / "broker" / "mosquitto.conf")],
            lambda: tls_handshake_ok(
                self.broker_port,
                self.layout.ca_cert,
                self.layout.cloud_mqtt_cert,
                self.layout.cloud_mqtt_key,
            ),
        )
        self._say(f"mosquitto on 127.0.0.1:{self.broker_port} (TLS, client certificates, ACL)")
        start_and_wait(
            self.supervisor,
            "cloud-stub",
            [
                _bin("cloud-stub"),
                "serve",
                "--deployment",
                str(self.layout.root),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
            ],
            lambda: http_ok(f"{self.api_url}/healthz"),
            timeout=30.0,
        )
        self._say(f"cloud stub on {self.api_url} (OpenAPI at {self.api_url}/docs)")

    def _write_agent_config(self) -> None:
        with self.bundle.config.open("rb") as fh:
            config: dict[str, Any] = tomllib.load(fh)
        opts = self.options
        config["agent"]["state_dir"] = str(self.state_dir)
        config["camera"] = {
            "source": "sim",
            "scene": "empty",
            "width": opts.width,
            "height": opts.height,
            "fps": opts.fps,
            "lores_width": 320,
            "lores_height": 240,
        }
        config["recorder"] = {"post_roll_s": opts.post_roll_s}
        # This sandbox has no NTP, so the kernel never reports a synchronized clock. A
        # Pi must keep the default ("kernel"); see docs/adr/0009-clock-and-deferral.md.
        config.setdefault("release", {})["clock"] = "unsafe-assume-synchronized"
        self.agent_config.write_text(tomli_w.dumps(config))

    # -- step 1 ----------------------------------------------------------------------

    def record(self) -> None:
        # The scenes play faster than real time; they are dated in the recent past (the
        # visitor 10 minutes ago, the passer-by 5) so that their clips do not overlap.
        base = _now()
        scenes = (
            ("visitor", self.options.visitor_s, base - timedelta(minutes=10)),
            ("passerby", self.options.passerby_s, base - timedelta(minutes=5)),
        )
        for scene, seconds, start in scenes:
            started = time.monotonic()
            _run(
                self._agent(
                    "simulate",
                    "--scene",
                    scene,
                    "--duration",
                    str(seconds),
                    "--fast",
                    "--start",
                    _rfc3339(start),
                ),
                what=f"doorbell-agent simulate --scene {scene}",
                timeout=300.0,
            )
            self._say(
                f"scene {scene!r}: {seconds:.0f} s of {self.options.width}x{self.options.height} "
                f"video recorded and sealed in {time.monotonic() - started:.1f} s"
            )
        self.clips = json.loads(_run(self._agent("clips", "list", "--json"), what="clips list"))
        if len(self.clips) != 2:
            raise StepFailed(
                f"expected 2 clips (visitor, passer-by), the index holds {len(self.clips)}"
            )
        for clip in self.clips:
            events = ", ".join(str(e.get("kind")) for e in clip.get("events", [])) or "none"
            self._say(
                f"clip {clip['id']}: {clip['start']} .. {clip['end']}, {clip['bytes']} bytes, "
                f"state {clip['state']}, events: {events}"
            )
        scan = scan_for_plaintext(self.state_dir)
        if scan.hits:
            raise StepFailed("plaintext on the device's storage: " + "; ".join(scan.hits))
        self._say(
            f"scanned {scan.files} files ({scan.bytes} bytes) under {self.state_dir}: no MP4 box "
            "(ftyp/moof/mdat) and no AGE-SECRET-KEY anywhere: the card holds no readable video"
        )
        first = self.state_dir / "vault"
        header = next(iter(sorted(first.rglob("*.age"))), None)
        if header is not None:
            self._say(f"a sealed clip begins {header.read_bytes()[:21]!r} (a standard age file)")

        start_and_wait(
            self.supervisor,
            "doorbell-agent",
            self._agent("run"),
            self._escrow_acknowledged,
            timeout=45.0,
        )
        self._say("agent running; its epoch keys are escrowed to the cloud and acknowledged")
        self._say("the device holds trust root v2 from its bundle, and with it the log's "
                  "policy: no token is believed without a proof from the public log")

    def _escrow_acknowledged(self) -> bool:
        outbox = self.state_dir / "vault" / "outbox"
        if not outbox.is_dir():
            return False
        status = self.state_dir / "status.json"
        if not status.exists():
            return False
        return not any(p.suffix == ".json" for p in outbox.iterdir())

    # -- steps 2-4 ---------------------------------------------------------------------

    def _window(self) -> dict[str, str]:
        visitor = min(self.clips, key=lambda c: c["start"])
        passerby = max(self.clips, key=lambda c: c["start"])
        start = _parse_time(visitor["start"]) - timedelta(minutes=1)
        visitor_end = _parse_time(visitor["end"])
        gap_end = _parse_time(passerby["start"])
        end = visitor_end + (gap_end - visitor_end) / 2
        # The window must lie in the past when the court signs it.
        wait_for("the visitor's window to be in the past", lambda: _now() > end, timeout=60.0)
        return {"start": _rfc3339(start), "end": _rfc3339(end)}

    def voluntary(self) -> None:
        view = submit(
            self.client("agency"),
            {
                "basis": "voluntary",
                **AGENCY_FIELDS,
                "device_ids": [DEVICE_ID],
                "message": "Could you share any footage of the street from last night?",
            },
        )
        codes = refusal_codes(view)
        if view.get("status") != "refused" or "voluntary_requests_discontinued" not in codes:
            raise StepFailed(f"the voluntary request was not refused as promised: {view}")
        self.report["voluntary"] = {
            "request_id": view["id"],
            "status": view["status"],
            "codes": codes,
        }
        self._say(f"request {view['id']}: {view['status']} with code {codes[0]}")

    def _warrant_fields(self, window: dict[str, str], *, signed: bool) -> dict[str, Any]:
        document = self.out / "warrant.txt"
        document.write_text(
            "IN THE DEMO DISTRICT COURT\nSEARCH WARRANT 2026-MJ-00421\n"
            f"Device {DEVICE_ID}, footage from {window['start']} to {window['end']}.\n"
        )
        fields: dict[str, Any] = json.loads(
            _run(
                [
                    _bin("cloud-stub"),
                    "court",
                    "sign",
                    "--deployment",
                    str(self.layout.root),
                    "--court",
                    COURT_ID,
                    "--document",
                    str(document),
                    "--docket",
                    "2026-MJ-00421",
                    "--judge",
                    "Hon. Ada Marsh",
                    "--devices",
                    DEVICE_ID,
                    "--window-start",
                    window["start"],
                    "--window-end",
                    window["end"],
                    "--issued",
                    _rfc3339(_now() - timedelta(minutes=1)),
                    "--key",
                    str(self.off_host / "courts" / f"{COURT_ID}.key"),
                ],
                what="cloud-stub court sign",
            )
        )
        if not signed:
            fields.pop("court_signature", None)
        return {**fields, **AGENCY_FIELDS, "recipient": self.agency_recipient}

    def unsigned_warrant(self) -> None:
        window = self._window()
        view = submit(self.client("agency"), self._warrant_fields(window, signed=False))
        codes = refusal_codes(view)
        if view.get("status") != "refused" or not codes:
            raise StepFailed(f"the warrant without a court signature was not refused: {view}")
        reasons = [str(r.get("reason")) for r in view.get("reasons", [])]
        self.report["unsigned_warrant"] = {
            "request_id": view["id"],
            "status": view["status"],
            "codes": codes,
            "reasons": reasons,
        }
        self._say(f"request {view['id']}: {view['status']} with code {', '.join(codes)}")
        for reason in reasons:
            self._say(f"  reason: {reason}")

    def warrant(self) -> None:
        window = self._window()
        view = submit(self.client("agency"), self._warrant_fields(window, signed=True))
        if view.get("status") == "refused":
            raise StepFailed(f"the court-signed warrant was refused: {view.get('reasons')}")
        self.warrant_request_id = view["id"]
        self._say(
            f"request {view['id']}: the legal check passed (court signature, particularity, "
            f"window {window['start']} .. {window['end']}); status {view['status']}"
        )
        shown = _run([_bin("doorbell-review"), "show", view["id"]], what="doorbell-review show",
                     env=self.reviewer_env)
        for line in shown.splitlines():
            if line.strip().startswith(("device:", "window:", "court:", "payload sha256:")):
                self._say(f"  rev-alice sees {line.strip()}")
        _run([_bin("doorbell-review"), "approve", view["id"], "--reason",
              "Warrant verified with the clerk of the issuing court."],
             what="doorbell-review approve", env=self.reviewer_env)
        approved = self.agency_view(view["id"])
        tokens = approved.get("tokens") or []
        # the device may have uploaded already by the time the view is read
        if approved.get("status") not in ("released", "uploaded", "evidence_received") \
                or not tokens:
            raise StepFailed(f"approval did not issue a token: {approved}")
        self.warrant_jti = tokens[0]["jti"]
        self._say(
            f"rev-alice approved with `doorbell-review approve`, signing on her machine; token "
            f"{self.warrant_jti} (seq {tokens[0]['seq']}) carries her signature, the court's "
            "statement and the policy signature, and was published to the device"
        )

        def uploaded() -> bool:
            self.supervisor.check_alive("doorbell-agent")
            current = self.agency_view(view["id"])
            statuses = {t["status"] for t in current.get("tokens", [])}
            if statuses & {"rejected", "failed"}:
                raise StepFailed(f"the device did not execute the token: {current['tokens']}")
            return "uploaded" in statuses

        wait_for("the device to upload the evidence", uploaded, timeout=60.0)
        self._say("the device verified the token, re-sealed the clips to the agency and uploaded")
        notice = self._owner_notice()
        self._say(
            f"owner notice on {notice['topic']}, read as owner.{DEVICE_ID} with the owner "
            f"bundle: {len(notice['clips'])} clip(s) released "
            f"under a {notice['basis']}, docket {notice['case'].get('docket')}, "
            f"{notice['case'].get('authority')}"
        )
        self.report["owner_notice"] = notice
        self._release_log_findings()

    def _release_log_findings(self) -> None:
        """The warrant's statement in the public log: its entry and cosignatures, the
        doorbell's checked checkpoint, the owner's monitor and the auditor's check."""
        from demo.owner import read_retained_status

        token_sha256 = self._warrant_token_sha256()
        size, witnesses = self.release_log.checkpoint()
        if len(witnesses) < QUORUM:
            raise StepFailed(f"the log's checkpoint has {len(witnesses)} cosignatures, "
                             f"fewer than the quorum of {QUORUM}")
        status = read_retained_status(owner=self.owner_bundle,
                                      accept=lambda body: body.get("release_log_size") == size)
        monitor = _run([_bin("doorbell-owner"), "--bundle", str(self.owner_bundle.root),
                        "monitor", "--state", str(self.out / "owner-monitor"), "--json"],
                       what="doorbell-owner monitor")
        entries = [json.loads(line) for line in monitor.splitlines()
                   if line.startswith("{") and "token_sha256" in line]
        if [e["token_sha256"] for e in entries] != [token_sha256]:
            raise StepFailed(f"the owner's monitor did not find the warrant's entry: {monitor}")
        index = entries[0]["index"]
        self._say(f"the service logged the release statement (token sha256 "
                  f"{token_sha256[:16]}...) at index {index} of {ORIGIN} and published the "
                  f"token only once {len(witnesses)} witnesses ({', '.join(witnesses)}) had "
                  f"cosigned the checkpoint of size {size}")
        self._say(f"the doorbell checked the proof (log signature, witness quorum, consistency "
                  f"with its stored checkpoint, inclusion, this token and this device) before "
                  f"reading the token: its published status says release_log_size "
                  f"{status['release_log_size']}")
        self._say(f"the owner's `doorbell-owner --bundle {self.owner_bundle.root.name} monitor`, "
                  f"reading only the log's tiles, found entry {index} for this doorbell: "
                  f"{entries[0]['basis']}, court {entries[0].get('court')}")
        proc = subprocess.run(self._cloud("report", "--verify-log",
                                          str(self.release_log.policy_file)),
                              capture_output=True, text=True, timeout=120, check=False)
        agreed = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        if proc.returncode != 0 or "agrees" not in agreed:
            raise StepFailed(f"cloud-stub report --verify-log: {proc.stderr.strip()[-600:]}")
        self._say(f"`cloud-stub report --verify-log`: {agreed.removeprefix('verify-log: ')}")
        self.report["release_log"] = {
            "index": index, "checkpoint_size": size, "cosigned_by": witnesses,
            "device_release_log_size": status["release_log_size"],
            "owner_monitor_entries": len(entries), "verify_log": agreed,
        }

    def _warrant_token_sha256(self) -> str:
        """The sha256 of the warrant token's bytes, from the doorbell's own decision."""
        from demo.attacker import device_decisions

        decision = device_decisions(self.state_dir, {self.warrant_jti}).get(self.warrant_jti)
        if decision is None or not decision.get("sha256"):
            raise StepFailed(f"the doorbell's audit has no decision for {self.warrant_jti}")
        return str(decision["sha256"])

    def agency_view(self, request_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self.client("agency").get(f"/v1/requests/{request_id}")
        return view

    def _owner_notice(self) -> dict[str, Any]:
        """Read the retained owner notice from the broker with the owner bundle, as the
        owner's app would."""
        from demo.owner import read_retained_notice  # paho only when this step runs

        return read_retained_notice(owner=self.owner_bundle, jti=self.warrant_jti)

    # -- step 5 ----------------------------------------------------------------------

    def retrieve(self) -> None:
        listing = self.client("agency").get(f"/v1/requests/{self.warrant_request_id}/evidence")
        files = listing.get("files", [])
        if not files:
            raise StepFailed("the evidence listing is empty")
        manifest_text = listing["manifests"][self.warrant_jti]
        identity = public_key_from_hex(
            (self.layout.device_record(DEVICE_ID) / "identity.pub").read_text().strip()
        )
        manifest = verify_manifest(manifest_text.encode(), identity)
        self._say(
            f"manifest for {manifest.jti} verifies against {DEVICE_ID}'s enrolled identity key "
            f"({len(manifest.clips)} clip(s))"
        )
        evidence = self.out / "evidence"
        evidence.mkdir()
        (evidence / "manifest.jws.json").write_text(manifest_text)
        by_id = {c.clip_id: c for c in manifest.clips}
        produced = []
        for item in files:
            sealed = evidence / f"{item['clip_id']}.mp4.age"
            digest = self.client("agency").download(item["download"], sealed)
            entry = by_id.get(item["clip_id"])
            if entry is None or entry.sha256 != digest:
                raise StepFailed(f"{sealed.name}: sha256 {digest} is not the manifest's")
            mp4 = evidence / f"{item['clip_id']}.mp4"
            _run(
                ["age", "-d", "-i", str(self.agency_identity), "-o", str(mp4), str(sealed)],
                what=f"age -d {sealed.name}",
            )
            info = probe_video(mp4)
            if info.codec != "h264":
                raise StepFailed(f"{mp4.name} is {info.codec}, not H.264")
            produced.append(
                {
                    "clip_id": item["clip_id"],
                    "file": str(mp4),
                    "sha256_sealed": digest,
                    "codec": info.codec,
                    "width": info.width,
                    "height": info.height,
                    "duration_s": round(info.duration_s, 2),
                }
            )
            self._say(
                f"{mp4}: {info.codec} {info.width}x{info.height}, {info.duration_s:.1f} s "
                f"(opened with age -d -i {self.agency_identity.name})"
            )
        self.report["evidence"] = produced

    # -- step 6 ----------------------------------------------------------------------

    def attacker(self) -> None:
        from demo.attacker import (
            device_decisions,
            forge,
            genuine_token_from_database,
            publish_as_cloud,
            uploads_for,
        )

        genuine = genuine_token_from_database(self.layout, DEVICE_ID)
        forgeries = forge(self.layout, DEVICE_ID, genuine, _now())
        self._say("an attacker copies every file of the cloud host: the policy key, v1's review "
                  "key, the escrow key, the database and the broker credentials")
        for forgery in forgeries:
            self._say(f"  forged {forgery.basis} token {forgery.jti}, signed with every release "
                      "key on the host" + (", carrying the court's genuine statement from the "
                                           "database, for a two-day window"
                                           if forgery.basis == "warrant" else ""))
        settings = tomllib.loads(self.layout.settings.read_text())
        publish_as_cloud(self.layout, self.broker_port, str(settings["prefix"]), DEVICE_ID,
                         [f.token for f in forgeries])
        ids = {f.bytes_id for f in forgeries}  # unproven: judged under their bytes' id
        wait_for("the device to judge the forged tokens",
                 lambda: len(device_decisions(self.state_dir, ids)) == len(ids), timeout=30.0)
        decisions = device_decisions(self.state_dir, ids)
        codes = {f.basis: decisions[f.bytes_id].get("code") for f in forgeries}
        statuses = {decisions[i].get("status") for i in ids}
        claimed = {f.jti for f in forgeries}
        if statuses != {"rejected"} or uploads_for(self.state_dir, ids | claimed):
            raise StepFailed(f"a forged token was not refused: {decisions}")
        for forgery in forgeries:
            self._say(f"the doorbell refused the forged {forgery.basis} token "
                      f"({forgery.bytes_id}): {codes[forgery.basis]}: it is not in the public "
                      "log, so it was refused before its signatures were even read (nothing "
                      "re-sealed, nothing uploaded)")
        self._say("the attacker holds every key of the cloud host but none of the witnesses': "
                  "no forged token can come with a cosigned proof")
        rule_codes = {f.basis: self._token_rule_code(f.basis, f.token) for f in forgeries}
        for basis, code in rule_codes.items():
            self._say(f"behind the log's gate, the token rules would refuse the forged {basis} "
                      f"token too: `doorbell-agent token verify` under root v2 says {code} "
                      "(no file on the host holds rev-alice's key)")
        self.report["attacker"] = {"codes": codes, "uploads": 0}
        self.report["attacker_token_rules"] = rule_codes

    def _token_rule_code(self, basis: str, token: bytes) -> str:
        """What the doorbell's token rules (`doorbell-agent token verify`, offline, under
        the bundle's trust root v2) say of a token, had it passed the log's gate."""
        path = self.out / "attacker" / f"forged-{basis}.jws.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(token)
        proc = subprocess.run(
            [_bin("doorbell-agent"), "token", "verify", str(path), "--trust-root",
             str(self.bundle.trust_root), "--device", DEVICE_ID],
            capture_output=True, text=True, timeout=60, check=False)
        try:
            verdict = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise StepFailed(f"doorbell-agent token verify exited with {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()[-300:]}") from None
        if proc.returncode != 1 or verdict.get("accepted") is not False:
            raise StepFailed(f"the token rules did not refuse the forged {basis} token: "
                             f"{verdict}")
        return str(verdict.get("code"))

    # -- step 7 ----------------------------------------------------------------------

    def audit_and_report(self) -> None:
        device_audit = _run(self._agent("audit", "verify"), what="doorbell-agent audit verify")
        self._say(f"device audit chain: {device_audit.strip().splitlines()[-1]}")
        cloud_audit = _run(self._cloud("audit", "verify"), what="cloud-stub audit verify")
        self._say(f"cloud audit chain: {cloud_audit.strip().splitlines()[-1]}")
        transparency = self.client("admin").get("/v1/transparency")
        refusals = transparency.get("refusals_by_code", {})
        self._say(
            f"transparency: {transparency['requests']} requests, by outcome "
            f"{transparency['by_outcome']}, refusals {refusals}, "
            f"data produced {transparency['data_produced']}, "
            f"owners notified {transparency['owners_notified']}"
        )
        self.report.update(
            {
                "device_audit": device_audit.strip(),
                "cloud_audit": cloud_audit.strip(),
                "transparency": transparency,
                "counts": {
                    "voluntary_refusals": refusals.get("voluntary_requests_discontinued", 0),
                    "unsigned_warrant_refusals": sum(
                        refusals.get(code, 0) for code in self.report["unsigned_warrant"]["codes"]
                    ),
                    "warrants_with_data_produced": transparency["data_produced"],
                },
            }
        )
        path = self.out / "report.json"
        path.write_text(json.dumps(self.report, indent=2, sort_keys=True, default=str) + "\n")
        self._say(f"report written to {path}")

    def steps(self) -> list[Step]:
        return [
            Step(
                "the doorbell records a visitor and a passer-by, sealed on the device", self.record
            ),
            Step("an agency sends a voluntary request", self.voluntary),
            Step(
                "the agency sends a warrant request without a court signature",
                self.unsigned_warrant,
            ),
            Step("a court-signed warrant: legal check, review, token, device upload", self.warrant),
            Step("the agency retrieves and opens its evidence", self.retrieve),
            Step("an attacker with every file of the cloud host forges tokens", self.attacker),
            Step("audit chains and the transparency report", self.audit_and_report),
        ]
