"""Garbage of every shape at the release handler: no crash, no upload, a `rejected`
result for each payload, and the device still executes a valid token afterwards.

The bulk (more than 10,000 payloads) goes straight into the handler's bytes-in entry
point; a sample goes through the real broker to the running service. The release state
of the bulk run lives on tmpfs (/dev/shm): what is under test here is the handler's
judgement, not fsync, and 10,000 fsync'd decisions would take minutes on a shared disk.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.release.service import ReleaseService
from protocol.token import TOKEN_TYP
from tests.fixtures.broker import Broker
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.evidence import EvidenceCloud, EvidenceEndpoint
from tests.fixtures.release import (
    DeviceRig,
    Minter,
    ResultWatcher,
    b64url,
    craft_token,
    kid_of,
    make_rig,
    run_chores,
)

pytestmark = pytest.mark.slow

PER_STRATEGY = 2_100  # five strategies: 10,500 payloads in the bulk run
BATCH = 10  # payloads per hypothesis example: one drawn whole, nine derived from it

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=15,
)
CLAIM_NAMES = [
    "v", "iss", "aud", "jti", "seq", "iat", "nbf", "exp", "basis", "case", "window",
    "recipient", "keys", "upload", "notify_after", "hold_until",
]  # fmt: skip
claims_like = st.dictionaries(st.sampled_from(CLAIM_NAMES), json_values, max_size=16)
b64_text = st.binary(max_size=96).map(b64url)
header_like = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["Ed25519", "EdDSA", "none", "HS256", ""]) | st.text(max_size=8),
        "kid": st.text(max_size=70) | st.sampled_from(["0" * 64, "f" * 64]),
        "typ": st.sampled_from([TOKEN_TYP, "JWT", ""]) | st.text(max_size=8),
        "crit": json_values,
        "jwk": json_values,
    },
)


def jws_shaped() -> st.SearchStrategy[bytes]:
    signature = st.fixed_dictionaries(
        {"protected": b64_text | header_like.map(lambda h: b64url(json.dumps(h).encode()))},
        optional={"signature": b64_text | st.text(max_size=20), "header": json_values},
    )
    envelope = st.fixed_dictionaries(
        {
            "payload": b64_text
            | claims_like.map(lambda c: b64url(json.dumps(c).encode()))
            | json_values,
            "signatures": st.lists(signature, max_size=4) | json_values,
        },
        optional={"protected": b64_text, "signature": b64_text},
    )
    return envelope.map(lambda e: json.dumps(e).encode())


class Corpus:
    """What the strategies need from the device: a consumed valid token and real keys."""

    def __init__(self, rig: DeviceRig, minter: Minter, valid: bytes) -> None:
        self.rig = rig
        self.minter = minter
        self.valid = valid

    def mutants(self) -> st.SearchStrategy[bytes]:
        """Byte-level and JSON-level mutations of a token whose jti is already spent."""
        size = len(self.valid)
        flip = st.tuples(st.integers(0, size - 1), st.integers(1, 255)).map(
            lambda p: self.valid[: p[0]] + bytes([self.valid[p[0]] ^ p[1]]) + self.valid[p[0] + 1 :]
        )
        cut = st.integers(0, size).map(lambda n: self.valid[:n])
        insert = st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=16)).map(
            lambda p: self.valid[: p[0]] + p[1] + self.valid[p[0] :]
        )
        envelope = json.loads(self.valid)

        def replace(member: tuple[str, Any]) -> bytes:
            changed = dict(envelope)
            changed[member[0]] = member[1]
            return json.dumps(changed).encode()

        swap = st.tuples(st.sampled_from(["payload", "signatures", "extra"]), json_values).map(
            replace
        )
        return flip | cut | insert | swap

    def signed_garbage(self) -> st.SearchStrategy[bytes]:
        """Well-signed envelopes (both release keys, right headers) over random claims:
        the signature rules pass, so every later rule meets hostile values."""
        signers = [self.minter.signers["policy"], self.minter.signers["review"]]
        base = json.loads(base64.urlsafe_b64decode(_pad(json.loads(self.valid)["payload"])))

        def sign(changes: dict[str, Any]) -> bytes:
            payload = {**base, **changes}
            headers = [({"alg": "Ed25519", "kid": kid_of(k), "typ": TOKEN_TYP}, k) for k in signers]
            return craft_token(payload, headers)

        return claims_like.map(sign)


def _edit(data: bytes, where: int, value: int, kind: str) -> bytes:
    """One byte-level edit of `data` at `where` (modulo its length)."""
    if not data:
        return bytes([value])
    at = where % len(data)
    if kind == "f":
        return data[:at] + bytes([data[at] ^ (value or 1)]) + data[at + 1 :]
    if kind == "c":
        return data[:at]
    return data[:at] + data[at:] + data[at:]  # duplicate the tail


def _pad(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix="release-fuzz-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _setup(rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService) -> Corpus:
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, evidence.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    evidence.issue(claims)
    valid = minter.sign(claims)
    assert service.handler.handle(valid).status == "accepted"
    run_chores(service)
    assert evidence.manifest_posts == {claims.jti: 1}
    return Corpus(rig, minter, valid)


def test_ten_thousand_hostile_payloads_into_the_handler(
    deployment: TestDeployment, shm_dir: Path, evidence_cloud: EvidenceCloud
) -> None:
    rig = make_rig(deployment, shm_dir)
    evidence = EvidenceEndpoint(rig, evidence_cloud)
    evidence.start()
    service = rig.service()
    try:
        corpus = _setup(rig, evidence, service)
        uploaded = {k: bytes(v.data) for k, v in evidence.files.items()}
        jobs_before = service.jobs.running_jobs()
        seen: dict[str, int] = {}
        fast = settings(
            max_examples=PER_STRATEGY // BATCH,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        strategies = {
            "bytes": st.binary(max_size=3000),
            "json": json_values.map(lambda v: json.dumps(v).encode()),
            "jws": jws_shaped(),
            "mutant": corpus.mutants(),
            "signed": corpus.signed_garbage(),
        }

        def runner(name: str, strategy: st.SearchStrategy[bytes]) -> Any:
            # Drawing a structured payload costs hypothesis ~10 ms; drawing two integers
            # costs almost nothing. So each example draws one payload whole and derives
            # nine more from it by hypothesis-chosen byte edits (flip, cut, duplicate).
            edits = st.lists(
                st.tuples(st.integers(0, 2**20), st.integers(0, 255), st.sampled_from("fcd")),
                min_size=BATCH - 1,
                max_size=BATCH - 1,
            )

            @fast
            @given(strategy, edits)
            def run(first: bytes, changes: list[tuple[int, int, str]]) -> None:
                payloads = [first] + [_edit(first, *change) for change in changes]
                for payload in payloads:
                    if payload == corpus.valid:  # a mutation undone: the token itself,
                        continue  # which gets its result again (ADR 0011), not judged
                    outcome = service.handler.handle(payload)
                    seen[name] = seen.get(name, 0) + 1
                    assert outcome.status == "rejected", (name, outcome, payload[:200])
                    assert outcome.reason, outcome

            return run

        for name, strategy in strategies.items():
            runner(name, strategy)()
        assert sum(seen.values()) >= 10_000, seen
        run_chores(service)
        assert service.jobs.running_jobs() == jobs_before == []
        assert {k: bytes(v.data) for k, v in evidence.files.items()} == uploaded
        assert len(evidence.manifest_posts) == 1
        # every payload left exactly one decision in the audit log
        decisions = sum(
            1
            for line in service.layout.audit_log.read_text().splitlines()
            if json.loads(line)["event"] == "decision"
        )
        assert decisions == sum(seen.values()) + 1  # + the valid token
        # and the device still works
        now = rig.clock.now()
        fresh = corpus.minter.claims(now - timedelta(hours=1), now - timedelta(minutes=2))
        evidence.issue(fresh)
        assert service.handler.handle(corpus.minter.sign(fresh)).status == "accepted"
        run_chores(service)
        assert evidence.manifest_posts[fresh.jti] == 1
    finally:
        service.stop()
        evidence.stop()
        rig.close()


@pytest.mark.broker
def test_hostile_payloads_through_the_broker(
    deployment: TestDeployment, broker: Broker, tmp_path: Path, evidence_cloud: EvidenceCloud
) -> None:
    rig = make_rig(deployment, tmp_path, broker_port=broker.port)
    evidence = EvidenceEndpoint(rig, evidence_cloud)
    evidence.start()
    service = rig.service()
    try:
        corpus = _setup(rig, evidence, service)
        uploaded = {k: bytes(v.data) for k, v in evidence.files.items()}
        sample: list[bytes] = []
        for strategy in (
            st.binary(max_size=2000),
            jws_shaped(),
            corpus.mutants(),
            corpus.signed_garbage(),
        ):

            @settings(
                max_examples=60,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def collect(payload: bytes) -> None:
                if payload != corpus.valid:  # the token itself is a re-delivery (ADR 0011)
                    sample.append(payload)

            collect()
        # above the link's 256 KiB cap, below the broker's 260 KiB packet limit: the
        # device refuses it without keeping the bytes
        sample.append(b"\x00" * 264_000)
        watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
        service.start()
        watcher.wait(watcher.topics.status, lambda b: b["state"] == "online")
        for payload in sample:
            watcher.publish_token(payload)

        def rejected() -> int:
            return sum(1 for r in watcher.results() if r["status"] == "rejected")

        import time

        deadline = time.monotonic() + 120
        while rejected() < len(sample) and time.monotonic() < deadline:
            time.sleep(0.2)
        results = [r for r in watcher.results() if r["status"] == "rejected"]
        assert len(results) == len(sample)
        assert any(r["reason"] == "oversized" for r in results)
        assert {k: bytes(v.data) for k, v in evidence.files.items()} == uploaded
        assert service.alive()
        # still alive and correct: a valid token is executed after the storm
        now = rig.clock.now()
        fresh = corpus.minter.claims(now - timedelta(hours=1), now - timedelta(minutes=2))
        evidence.issue(fresh)
        watcher.publish_token(corpus.minter.sign(fresh))
        assert watcher.result(fresh.jti, "uploaded", timeout=30)["status"] == "uploaded"
    finally:
        service.stop()
        evidence.stop()
        rig.close()
