"""The soak's schedule: rounds of agency requests and reviewer approvals, each with a
fault drawn from a seeded random generator and injected at the moment it names.

A round picks the next device (in turn) and the next of its clips, asks for exactly
that clip's window (a court-signed warrant, or every third round an emergency that two
reviewers of different organisations approve), approves it, and injects its fault. It
then waits a bounded time for the token to settle; tokens that have not settled by then
are judged after the last round, once every fault has been repaired.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from demo.agency import AGENCY_FIELDS, submit
from demo.steps import StepFailed
from tests.soak.world import COURT_ID, SoakDevice, SoakError, SoakWorld, parse_time, rfc3339, run

SETTLED = frozenset({"uploaded", "rejected", "superseded", "preserved"})
ROUND_SETTLE_S = 45.0
UPLOAD_SEEN_S = 20.0
UPLOAD_CUT_AFTER = 96 * 1024  # bytes of a clip (about 550 kB) through the proxy


class Fault(StrEnum):
    NONE = "none"
    KILL_SERVICE_DURING_APPROVAL = "kill-service-during-approval"
    KILL_SERVICE_DURING_INTAKE = "kill-service-during-evidence-intake"
    BROKER_RESTART = "broker-restart"
    KILL_AGENT_DURING_RESEAL = "kill-agent-during-reseal"
    KILL_AGENT_DURING_UPLOAD = "kill-agent-during-upload"
    DISK_FULL = "device-disk-full"
    CUT_CONNECTION = "cut-connection"
    CLOCK_STEP = "device-clock-step"


@dataclass
class Round:
    number: int
    device: str
    clip_id: str
    basis: str
    fault: Fault
    request_id: str = ""
    approved: bool = False
    fault_hit: str = ""  # what the fault met, e.g. "upload under way (12 kB seen)"


@dataclass
class Schedule:
    world: SoakWorld
    seed: int
    rounds: int
    kinds: tuple[Fault, ...] = ()  # the fault kinds to draw from; all when empty
    faults: list[Fault] = field(default_factory=list)
    log: list[Round] = field(default_factory=list)

    def __post_init__(self) -> None:
        kinds = [f for f in (self.kinds or tuple(Fault)) if f is not Fault.NONE]
        if not self.world.tmpfs and Fault.DISK_FULL in kinds:
            kinds.remove(Fault.DISK_FULL)
        if self.world.clockshift is None and Fault.CLOCK_STEP in kinds:
            kinds.remove(Fault.CLOCK_STEP)
        rng = random.Random(self.seed)
        # Every kind at least once when there are enough rounds, the rest drawn.
        drawn = kinds[: self.rounds] + [rng.choice([*kinds, Fault.NONE])
                                        for _ in range(max(0, self.rounds - len(kinds)))]
        rng.shuffle(drawn)
        self.faults = drawn
        self._rng = rng

    # -- requests ------------------------------------------------------------------

    def _warrant(self, device: SoakDevice, window: dict[str, str], number: int) -> dict[str, Any]:
        document = self.world.root / f"warrant-{number}.txt"
        docket = f"2026-MJ-{number:05d}"
        document.write_text(f"SEARCH WARRANT {docket}\nDevice {device.device_id}, {window}\n")
        fields: dict[str, Any] = json.loads(run(
            self.world.cloud(
                "court", "sign", "--court", COURT_ID, "--document", str(document),
                "--docket", docket, "--judge", "Hon. Ada Marsh", "--devices", device.device_id,
                "--window-start", window["start"], "--window-end", window["end"],
                "--issued", rfc3339(datetime.now(UTC) - timedelta(minutes=1)),
                "--key", str(self.world.court_key(COURT_ID)),
            ),
            what="cloud-stub court sign",
        ))
        return {**fields, **AGENCY_FIELDS, "recipient": self.world.agency_recipient}

    def _emergency(self, device: SoakDevice, window: dict[str, str]) -> dict[str, Any]:
        return {
            "basis": "emergency",
            "agency": AGENCY_FIELDS["agency"],
            "contact": AGENCY_FIELDS["contact"],
            "agency_case_number": "INC-2026-55310",
            "danger": "A nine year old child was abducted from the sidewalk in front of "
            "this house and the suspect threatened to kill her.",
            "persons_at_risk": "Maya R., nine years old, abducted at about 10:40 today.",
            "why_ongoing": "The child has not been found; the suspect's vehicle is still "
            "being sought and every hour lowers the chance of finding her alive.",
            "device_relevance": "The doorbell faces the sidewalk where the abduction "
            "happened; the window covers the minutes around it and may show the plate.",
            "certifying_officer": {"name": "Sgt. Lee Park", "badge": "4471",
                                   "title": "Sergeant", "contact": "l.park@metro-pd.example"},
            "supervisor": {"name": "Lt. Dana Cruz", "badge": "2210", "title": "Lieutenant",
                           "contact": "d.cruz@metro-pd.example"},
            "device_ids": [device.device_id],
            "window": window,
            "recipient": self.world.agency_recipient,
            "followup_due": rfc3339(datetime.now(UTC) + timedelta(hours=24)),
        }

    # -- approval --------------------------------------------------------------------

    def _reviewers(self, basis: str) -> list[str]:
        return ["rev-a", "rev-b"] if basis == "emergency" else ["rev-a"]

    def view(self, request_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.world.clients["admin"].get(f"/v1/requests/{request_id}")
        return answer

    def approve(self, record: Round) -> None:
        """Every reviewer the basis needs approves, each once: after a crash a reviewer
        looks at the request again and approves only if their decision is not recorded."""
        for reviewer in self._reviewers(record.basis):
            view = self.view(record.request_id)
            if view["status"] != "pending_review":
                break
            decided = {d.get("reviewer") for d in view.get("decisions", [])}
            if reviewer in decided:
                continue
            try:
                self.world.clients[reviewer].post(
                    f"/v1/requests/{record.request_id}/approve",
                    {"reason": f"Checked by {reviewer} for soak round {record.number}."},
                    also=(409,),
                )
            except StepFailed as exc:
                if "already" not in str(exc):
                    raise
        record.approved = self.view(record.request_id)["status"] != "pending_review"

    def _approve_while_killing(self, record: Round) -> None:
        errors: list[BaseException] = []

        def attempt() -> None:
            try:
                self.approve(record)
            except BaseException as exc:  # the service died under it: expected
                errors.append(exc)

        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        time.sleep(self._rng.uniform(0.0, 0.25))
        alive = thread.is_alive()
        self.world.supervisor.kill("cloud-stub")
        thread.join(timeout=60)
        record.fault_hit = "approval in flight" if alive else "approval had returned"
        self.world.start_cloud()
        self.approve(record)

    # -- faults after approval --------------------------------------------------------

    def _wait_upload_bytes(self, record: Round) -> bool:
        proxy = self.world.proxy
        assert proxy is not None
        deadline = time.monotonic() + UPLOAD_SEEN_S
        while time.monotonic() < deadline:
            if proxy.forwarded_up >= UPLOAD_CUT_AFTER:
                record.fault_hit = f"upload under way ({proxy.forwarded_up} bytes seen)"
                return True
            time.sleep(0.002)
        record.fault_hit = "no upload seen"
        return False

    def _device(self, record: Round) -> SoakDevice:
        return next(d for d in self.world.devices if d.device_id == record.device)

    def play(self, record: Round, device: SoakDevice) -> None:
        world, fault = self.world, record.fault
        assert world.proxy is not None
        world.proxy.mark()
        if fault is Fault.KILL_SERVICE_DURING_APPROVAL:
            self._approve_while_killing(record)
            return
        if fault is Fault.DISK_FULL:
            with world.full_disk(device):
                self.approve(record)
                time.sleep(self._rng.uniform(2.0, 5.0))
                record.fault_hit = "disk full while the token arrived"
            return
        if fault is Fault.CLOCK_STEP:
            # The wall clock only, either way, within the token rules' 60 s skew: a step
            # the device must live through without losing or doubling anything.
            step = self._rng.choice([-1, 1]) * self._rng.randint(15, 45)
            device.step_clock(step)
            time.sleep(0.5)
            record.fault_hit = f"device wall clock stepped {step:+d} s before the approval"
        self.approve(record)
        if fault is Fault.BROKER_RESTART:
            time.sleep(self._rng.uniform(0.0, 0.5))
            world.restart_broker()
            record.fault_hit = "broker restarted after approval"
        elif fault is Fault.KILL_AGENT_DURING_RESEAL:
            time.sleep(self._rng.uniform(0.0, 0.4))
            world.supervisor.kill(device.process)
            record.fault_hit = "agent killed after the token was published"
            world.start_agent(device)
        elif fault is Fault.KILL_AGENT_DURING_UPLOAD:
            self._wait_upload_bytes(record)
            world.supervisor.kill(device.process)
            world.start_agent(device)
        elif fault is Fault.KILL_SERVICE_DURING_INTAKE:
            self._wait_upload_bytes(record)
            world.supervisor.kill("cloud-stub")
            world.start_cloud()
        elif fault is Fault.CUT_CONNECTION and self._wait_upload_bytes(record):
            world.proxy.cut()

    # -- the run -----------------------------------------------------------------------

    def run(self) -> list[Round]:
        next_clip: Counter[str] = Counter()
        for number, fault in enumerate(self.faults):
            device = self.world.devices[number % len(self.world.devices)]
            clips = self.world.clips[device.device_id]
            if next_clip[device.device_id] >= len(clips):
                raise SoakError("more rounds than recorded clips: raise --clips")
            clip = clips[next_clip[device.device_id]]
            next_clip[device.device_id] += 1
            basis = "emergency" if number % 3 == 2 else "warrant"
            record = Round(number, device.device_id, clip["id"], basis, fault)
            window = {
                "start": rfc3339(parse_time(clip["start"]) - timedelta(seconds=20)),
                "end": rfc3339(parse_time(clip["end"]) + timedelta(seconds=20)),
            }
            body = (self._warrant(device, window, number) if basis == "warrant"
                    else self._emergency(device, window))
            view = submit(self.world.clients["agency"], body)
            if view.get("status") != "pending_review":
                raise SoakError(f"round {number}: the request was not queued: {view}")
            record.request_id = view["id"]
            self.log.append(record)
            self.play(record, device)
            print(f"round {number:3d} {basis:9s} {device.device_id} {fault.value:38s} "
                  f"{record.fault_hit}", flush=True)
            self.settle([record], ROUND_SETTLE_S)
        return self.log

    def token_states(self, record: Round) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = self.view(record.request_id).get("tokens", [])
        return tokens

    def settle(self, records: list[Round], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for device in self.world.devices:
                self.world.supervisor.check_alive(device.process)
            open_ = [r for r in records if not self._settled(r)]
            if not open_:
                return
            time.sleep(0.5)

    def _settled(self, record: Round) -> bool:
        tokens = self.token_states(record)
        return bool(tokens) and all(t["status"] in SETTLED for t in tokens)
