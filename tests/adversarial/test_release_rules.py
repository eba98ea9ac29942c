"""Every acceptance rule, one attack each: a token that breaks exactly that rule uploads
nothing, creates no job, and yields a `rejected` result carrying that rule's code.

Each case starts from a token the device would accept and changes one thing."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.release.jobs import IMMEDIATE
from device.release.service import ReleaseService
from protocol.token import TOKEN_TYP, ReleaseClaims, Window, seal_keys_for_device
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.evidence import EvidenceCloud, EvidenceEndpoint
from tests.fixtures.release import (
    DeviceRig,
    Minter,
    craft_token,
    kid_of,
    make_rig,
    run_chores,
)


@dataclass
class Scene:
    rig: DeviceRig
    minter: Minter
    evidence: EvidenceEndpoint
    service: ReleaseService
    now: datetime

    def window(self) -> tuple[datetime, datetime]:
        return self.now - timedelta(hours=1), self.now - timedelta(minutes=1)

    def claims(self, **changes: Any) -> ReleaseClaims:
        start, end = self.window()
        claims = self.minter.claims(start, end, **changes)
        self.evidence.issue(claims)  # the cloud would accept the upload
        return claims

    def results(self) -> list[dict[str, Any]]:
        return [
            json.loads(i.payload)
            for i in self.service.jobs.due(IMMEDIATE)
            if i.topic == self.service.topics.result
        ]

    def expect_rejected(self, token: bytes, code: str) -> None:
        outcome = self.service.handler.handle(token)
        run_chores(self.service)
        assert outcome.status == "rejected", outcome
        assert outcome.reason == code, outcome
        assert self.evidence.files == {}
        assert self.evidence.manifest_posts == {}
        assert self.service.jobs.running_jobs() == []
        last = self.results()[-1]
        assert last["status"] == "rejected"
        assert last["reason"] == code


def _scene(deployment: TestDeployment, tmp_path: Path, release: dict[str, Any],
           evidence_cloud: EvidenceCloud) -> Iterator[Scene]:
    rig = make_rig(deployment, tmp_path, release=release)
    evidence = EvidenceEndpoint(rig, evidence_cloud)
    evidence.start()
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    service = rig.service()
    try:
        yield Scene(rig, Minter(rig, evidence.base), evidence, service, now)
    finally:
        service.stop()
        evidence.stop()
        rig.close()


@pytest.fixture
def scene(deployment: TestDeployment, tmp_path: Path, evidence_cloud: EvidenceCloud
          ) -> Iterator[Scene]:
    yield from _scene(deployment, tmp_path, {}, evidence_cloud)


def test_the_baseline_token_is_accepted(scene: Scene) -> None:
    """The control case: without a broken rule the same construction uploads."""
    claims = scene.claims()
    assert scene.service.handler.handle(scene.minter.sign(claims)).status == "accepted"
    run_chores(scene.service)
    assert scene.evidence.manifest_posts == {claims.jti: 1}


def _payload(claims: ReleaseClaims) -> dict[str, Any]:
    return claims.to_payload()


def _header(key: Ed25519PrivateKey, **changes: Any) -> dict[str, Any]:
    return {"alg": "Ed25519", "kid": kid_of(key), "typ": TOKEN_TYP, **changes}


def test_oversized_before_parsing(scene: Scene) -> None:
    scene.expect_rejected(b'{"payload": "' + b"A" * 70_000 + b'"}', "oversized")


def test_not_json(scene: Scene) -> None:
    scene.expect_rejected(b"\xff\xfe not a token", "malformed")


def test_wrong_typ_header(scene: Scene) -> None:
    signers = scene.minter.signers
    payload = _payload(scene.claims())
    token = craft_token(
        payload,
        [
            (_header(signers["policy"], typ="JWT"), signers["policy"]),
            (_header(signers["review"]), signers["review"]),
        ],
    )
    scene.expect_rejected(token, "bad_header")


def test_alg_none_header(scene: Scene) -> None:
    signers = scene.minter.signers
    payload = _payload(scene.claims())
    token = craft_token(
        payload,
        [
            (_header(signers["policy"], alg="none"), signers["policy"]),
            (_header(signers["review"]), signers["review"]),
        ],
    )
    scene.expect_rejected(token, "bad_header")


def test_signed_by_one_key_when_two_are_required(scene: Scene) -> None:
    scene.expect_rejected(scene.minter.sign(scene.claims(), ["policy"]), "below_threshold")


def test_the_same_signature_repeated(scene: Scene) -> None:
    """Attack: one signer's entry copied twice to fake a threshold of two."""
    policy = scene.minter.signers["policy"]
    token = craft_token(_payload(scene.claims()), [(_header(policy), policy)], repeat=[0])
    scene.expect_rejected(token, "below_threshold")


def test_untrusted_key_with_a_trusted_kid(scene: Scene) -> None:
    """Attack: a key the attacker owns, presented under the review key's kid."""
    signers = scene.minter.signers
    forger = Ed25519PrivateKey.generate()
    token = craft_token(
        _payload(scene.claims()),
        [
            (_header(signers["policy"]), signers["policy"]),
            (_header(signers["review"]), forger),
        ],
    )
    scene.expect_rejected(token, "bad_signature")


def test_root_keys_do_not_sign_releases(scene: Scene) -> None:
    scene.expect_rejected(
        scene.minter.sign(scene.claims(), ["root-1", "root-2"]), "below_threshold"
    )


def test_token_for_another_device(scene: Scene, deployment: TestDeployment) -> None:
    other = deployment.new_device_id("other")
    scene.expect_rejected(scene.minter.sign(scene.claims(aud=other)), "wrong_device")


def test_token_from_another_issuer(scene: Scene) -> None:
    scene.expect_rejected(scene.minter.sign(scene.claims(iss="evil-cloud")), "wrong_issuer")


def test_not_yet_valid(scene: Scene) -> None:
    now = int(scene.now.timestamp())
    claims = scene.claims(nbf=now + 3600, exp=now + 7200)
    scene.expect_rejected(scene.minter.sign(claims), "not_yet_valid")


def test_expired(scene: Scene) -> None:
    now = int(scene.now.timestamp())
    start, _ = scene.window()
    claims = scene.minter.claims(
        start - timedelta(hours=3),
        start - timedelta(hours=2, minutes=30),
        iat=now - 2 * 3600,
        nbf=now - 2 * 3600,
        exp=now - 60,
    )
    scene.evidence.issue(claims)
    scene.expect_rejected(scene.minter.sign(claims), "expired")


def test_token_life_longer_than_the_basis_allows(scene: Scene) -> None:
    scene.expect_rejected(scene.minter.sign(scene.claims(life_s=25 * 3600)), "token_life_too_long")


def test_replayed_token(scene: Scene) -> None:
    """Attack: a token re-signed under a jti the device accepted (other bytes: an
    identical re-delivery only gets the earlier result again, ADR 0011)."""
    claims = scene.claims()
    token = scene.minter.sign(claims)
    assert scene.service.handler.handle(token).status == "accepted"
    run_chores(scene.service)
    posts = dict(scene.evidence.manifest_posts)
    files = {k: bytes(v.data) for k, v in scene.evidence.files.items()}
    replay = scene.minter.sign(dataclasses.replace(claims, window=Window(
        claims.window.start - timedelta(hours=1), claims.window.end)))
    outcome = scene.service.handler.handle(replay)
    run_chores(scene.service)
    assert (outcome.status, outcome.reason) == ("rejected", "replayed")
    assert scene.evidence.manifest_posts == posts
    assert {k: bytes(v.data) for k, v in scene.evidence.files.items()} == files
    again = scene.service.handler.handle(token)
    run_chores(scene.service)
    assert again.status == "duplicate"
    assert scene.evidence.manifest_posts == posts
    assert {k: bytes(v.data) for k, v in scene.evidence.files.items()} == files


def test_lower_seq_than_the_last_accepted(scene: Scene) -> None:
    first = scene.claims()
    older = scene.claims(seq=first.seq - 1)
    assert scene.service.handler.handle(scene.minter.sign(first)).status == "accepted"
    run_chores(scene.service)
    posts = dict(scene.evidence.manifest_posts)
    outcome = scene.service.handler.handle(scene.minter.sign(older))
    assert (outcome.status, outcome.reason) == ("rejected", "stale_seq")
    run_chores(scene.service)
    assert scene.evidence.manifest_posts == posts


def test_window_longer_than_the_basis_allows(scene: Scene) -> None:
    end = scene.now - timedelta(minutes=1)
    claims = scene.minter.claims(end - timedelta(hours=73), end)  # warrant: 72 h
    scene.expect_rejected(scene.minter.sign(claims), "window_too_long")


def test_window_ending_after_issue(scene: Scene) -> None:
    claims = scene.minter.claims(scene.now - timedelta(hours=1), scene.now + timedelta(hours=1))
    scene.expect_rejected(scene.minter.sign(claims), "window_in_future")


def test_preservation_hold_longer_than_ninety_days(scene: Scene) -> None:
    start, end = scene.window()
    claims = scene.minter.claims(
        start, end, basis="preservation", hold_until=scene.now + timedelta(days=91)
    )
    scene.expect_rejected(scene.minter.sign(claims), "hold_too_long")


def test_recipient_that_is_not_an_age_recipient(scene: Scene) -> None:
    scene.expect_rejected(
        scene.minter.sign(scene.claims(recipient="age1notarecipient")), "bad_recipient"
    )


def test_keys_that_are_not_an_age_file(scene: Scene) -> None:
    keys = base64.b64encode(b"just some bytes").decode()
    scene.expect_rejected(scene.minter.sign(scene.claims(keys=keys)), "bad_keys")


def test_keys_sealed_to_another_device(scene: Scene) -> None:
    stranger = pyrage.x25519.Identity.generate()
    keys = seal_keys_for_device(scene.rig.identities, str(stranger.to_public()))
    scene.expect_rejected(scene.minter.sign(scene.claims(keys=keys)), "bad_keys")


def test_delivered_identity_is_not_the_recorded_epoch_key(scene: Scene) -> None:
    """Attack: a substituted epoch key (the device would re-seal with a key it never used)."""
    forged = {epoch: str(pyrage.x25519.Identity.generate()) for epoch in scene.rig.identities}
    scene.expect_rejected(scene.minter.sign(scene.claims(epochs=forged)), "keys_mismatch")


def test_delivered_epoch_the_device_never_recorded(scene: Scene) -> None:
    extra = {**scene.rig.identities, "1000000000-deadbeef": str(pyrage.x25519.Identity.generate())}
    scene.expect_rejected(scene.minter.sign(scene.claims(epochs=extra)), "keys_mismatch")


@pytest.fixture
def owner_scene(deployment: TestDeployment, tmp_path: Path, evidence_cloud: EvidenceCloud
                ) -> Iterator[Scene]:
    release = {
        "allowed_bases": ["warrant", "preservation"],
        "max_window_s": {"warrant": 1800},
        "max_token_life_s": {"warrant": 10**9},  # an attempt to loosen: must not
    }
    yield from _scene(deployment, tmp_path, release, evidence_cloud)


def test_owner_refuses_a_basis(owner_scene: Scene) -> None:
    scene = owner_scene
    scene.expect_rejected(scene.minter.sign(scene.claims(basis="emergency")), "basis_not_allowed")


def test_owner_tightens_the_window(owner_scene: Scene) -> None:
    scene = owner_scene
    end = scene.now - timedelta(minutes=1)
    claims = scene.minter.claims(end - timedelta(minutes=45), end)  # root allows 72 h
    scene.expect_rejected(scene.minter.sign(claims), "window_too_long")


def test_owner_cannot_loosen_the_token_life(owner_scene: Scene) -> None:
    scene = owner_scene
    claims = scene.minter.claims(
        scene.now - timedelta(minutes=20), scene.now - timedelta(minutes=1), life_s=25 * 3600
    )
    scene.expect_rejected(scene.minter.sign(claims), "token_life_too_long")


def test_every_rejection_code_is_exercised() -> None:
    """The codes above cover every device rule of protocol.errors.RejectionCode."""
    from protocol.errors import RejectionCode
    from tests.vectors.test_vectors_v2 import V2_CODES

    covered = {
        "oversized", "malformed", "bad_header", "bad_signature", "below_threshold",
        "wrong_device", "wrong_issuer", "not_yet_valid", "expired", "token_life_too_long",
        "replayed", "stale_seq", "basis_not_allowed", "window_too_long", "window_in_future",
        "hold_too_long", "bad_recipient", "bad_keys", "keys_mismatch",
    }  # fmt: skip
    device_rules = {c.value for c in RejectionCode} - {
        "clock_unsynchronized",  # a deferral, tested in test_release_mqtt
        "root_expired",  # trust-root rules, not token rules
        "bad_version",
    } - V2_CODES  # trust root v2 rules: tests/adversarial/test_compromised_host.py
    assert device_rules == covered
