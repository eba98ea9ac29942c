"""Re-issuing a refused token under trust root v2: reviewers sign the new token on their
own machines (docs/adr/0013-trust-root-v2.md, "Re-issue by signature").

The deployment moves its decisive keys off the host and rotates to v2 with reviewers alice
(acme-review) and bob (beta-review), each keeping a key made by `doorbell-review keygen`
under a config directory of their own; the cloud stub serves on a loopback port with a real
SQLite store. The loss of ADR 0011: token A (request one) is lost, the device accepts token
B (request two, a higher ``seq``), A then reaches it and the device's own check
(`verify_release` with B in its replay state) refuses it ``stale_seq``; that verdict is
reported through the seam the MQTT link calls (`DeviceEvents.result_received`, with the
sha256 of the bytes judged). A new token is judged by the same check and replay state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cloud_stub.domain.lifecycle import TokenStatus
from cloud_stub.policy.courts import load_court_key
from cloud_stub.store.models import AuditRow, Request, Token
from protocol.errors import TokenRejected
from protocol.keys import key_id, private_key_from_pem
from protocol.release_check import verify_release
from protocol.release_signing import DetachedSignature, assemble, sign_detached
from protocol.token import ReleaseClaims, VerificationContext
from protocol.trust_root_v2 import TrustRootV2, load_any_trust_root
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal, open_cloud
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.policy import COURT_ID, PolicyWorld
from tests.fixtures.reissue import Replay
from tests.fixtures.reissue import refuse as _refuse
from tests.fixtures.reissue import tokens as _tokens

BIN = Path(sys.executable).parent
APPROVE = "warrant checked against the court's docket"
REISSUE = "The broker lost the first token; the device took a later one. Same warrant."


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


@dataclass
class Reviewer:
    """A reviewer with a key on their own machine (`home`) and an API key."""

    name: str
    org: str
    home: Path
    api_key: str

    def env(self, cloud: CloudServer) -> dict[str, str]:
        return {"XDG_CONFIG_HOME": str(self.home), "DOORBELL_REVIEW_API": cloud.url,
                "DOORBELL_REVIEW_API_KEY": self.api_key}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def key(self) -> Any:
        return private_key_from_pem((self.home / "doorbell-review" / "reviewer.key").read_bytes())

    def review(self, cloud: CloudServer, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run(str(BIN / "doorbell-review"), *argv, env=self.env(cloud))


@dataclass
class V2:
    cloud: CloudServer
    alice: Reviewer
    bob: Reviewer
    away: Path  # the keys moved off the host


@pytest.fixture
def v2(fresh_deployment: TestDeployment, tmp_path: Path) -> Iterator[V2]:
    """A deployment rotated to trust root v2 with reviewers alice and bob, served."""
    d = fresh_deployment
    away = d.move_keys_off_host()
    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"
    where = ["--deployment", str(d.layout.root), "--store-url", store]
    reviewers = []
    for name, org in (("alice", "acme-review"), ("bob", "beta-review")):
        home = tmp_path / f"{name}-home"
        keygen = _run(str(BIN / "doorbell-review"), "keygen",
                      env={"XDG_CONFIG_HOME": str(home)})
        assert keygen.returncode == 0, keygen.stderr
        public = next(line.split()[-1] for line in keygen.stdout.splitlines()
                      if line.startswith("public key:"))
        added = _run(str(BIN / "cloud-stub"), "reviewers", "add", name, "--org", org,
                     "--public-key", public, "--json", *where)
        assert added.returncode == 0, added.stderr
        reviewers.append(Reviewer(name, org, home, json.loads(added.stdout)["api_key"]))
    signed = _run(str(BIN / "cloud-stub"), "root", "sign", "--keys",
                  str(away / "offline-root"), *where)
    assert signed.returncode == 0, signed.stderr
    for cloud in open_cloud(d, tmp_path, store_url=store):
        yield V2(cloud, reviewers[0], reviewers[1], away)
        break


def _root(cloud: CloudServer) -> TrustRootV2:
    root = load_any_trust_root(cloud.deployment.layout.trust_root.read_bytes(),
                               now=datetime.now(UTC))
    assert isinstance(root, TrustRootV2)
    return root


def device_verdict(cloud: CloudServer, device_id: str, jws: str,
                   replay: Replay | None) -> ReleaseClaims | str:
    """The claims when the device accepts the token, else its rejection code."""
    context = VerificationContext(device_id=device_id, now=datetime.now(UTC),
                                  clock_synchronized=True)
    try:
        return verify_release(jws.encode(), root=_root(cloud), context=context, replay=replay)
    except TokenRejected as exc:
        return str(exc.code)


def _status(cloud: CloudServer, request_id: str) -> str:
    with cloud.service.store.read() as session:
        row = session.get(Request, request_id)
        assert row is not None
        return row.status


def _audit(cloud: CloudServer, action: str) -> list[dict[str, Any]]:
    with cloud.service.store.read() as session:
        return [dict(d) for d in session.execute(
            select(AuditRow.detail).where(AuditRow.action == action)
            .order_by(AuditRow.seq)).scalars()]


def _audited(cloud: CloudServer, action: str) -> list[tuple[str, dict[str, Any]]]:
    """The audit entries of `action`: actor and detail."""
    with cloud.service.store.read() as session:
        return [(r.actor, dict(r.detail)) for r in session.execute(
            select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.seq)
        ).scalars()]


def _snapshot(cloud: CloudServer, request_id: str) -> tuple[Any, ...]:
    return (_status(cloud, request_id), len(_audit(cloud, "token.reissued")),
            [(t.jti, t.seq, t.status, t.status_reason) for t in _tokens(cloud, request_id)
             if t.status != TokenStatus.PREPARED])


@dataclass
class Stale:
    """Request one's token A refused ``stale_seq`` by the device, which accepted B."""

    agency: Principal
    device: DeviceSigner
    request_id: str
    a: Token
    b: Token


def _approved(v2: V2, agency: Principal, device: DeviceSigner) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    world = PolicyWorld(now=now, court_key=load_court_key(
        v2.away / "courts" / f"{COURT_ID}.key"), recipient=agency.recipient or "")
    response = v2.cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    request_id = str(response.json()["id"])
    approved = v2.alice.review(v2.cloud, "approve", request_id, "--reason", APPROVE)
    assert approved.returncode == 0, approved.stderr
    return request_id


def _approved_emergency(v2: V2) -> tuple[Principal, DeviceSigner, str]:
    """An emergency request for a new device, approved by alice and bob (two
    organisations, as an emergency needs): (agency, device, request id)."""
    cloud = v2.cloud
    agency = cloud.principal("agency", org="metro-pd")
    device = cloud.enroll()
    now = datetime.now(UTC).replace(microsecond=0)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=40), now)
    world = PolicyWorld(now=now, recipient=agency.recipient or "")
    response = cloud.submit(agency, world.emergency(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    request_id = str(response.json()["id"])
    for reviewer in (v2.alice, v2.bob):
        approved = reviewer.review(cloud, "approve", request_id, "--reason", APPROVE)
        assert approved.returncode == 0, approved.stderr
    return agency, device, request_id


def _make_stale(v2: V2) -> Stale:
    cloud = v2.cloud
    agency = cloud.principal("agency", org="metro-pd")
    device = cloud.enroll()
    now = datetime.now(UTC).replace(microsecond=0)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=40), now)
    request_id = _approved(v2, agency, device)  # token A: the broker loses it
    [a] = _tokens(cloud, request_id)
    [b] = _tokens(cloud, _approved(v2, agency, device))  # token B reaches the device
    assert a.seq < b.seq
    assert isinstance(device_verdict(cloud, device.device_id, b.jws, None), ReleaseClaims)
    verdict = device_verdict(cloud, device.device_id, a.jws, Replay(b))
    assert verdict == "stale_seq"  # the device's own refusal, reported as such
    _refuse(cloud, device.device_id, a, verdict)
    assert _status(cloud, request_id) == "rejected"
    return Stale(agency, device, request_id, a, b)


def test_reviewer_reissues_by_signature_and_the_device_accepts_the_new_token(
    v2: V2,
) -> None:
    cloud = v2.cloud
    stale = _make_stale(v2)
    replay = Replay(stale.b)
    # the service cannot sign it by itself under v2: the v1 route still says so
    response = cloud.http.post(f"/v1/requests/{stale.request_id}/reissue",
                               headers=v2.bob.headers, json={"reason": REISSUE})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "reviewer_signature_required"

    shown = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                           headers=v2.bob.headers).json()
    assert shown["reviewers_required"] == 1
    [entry] = shown["payloads"]
    assert entry["replaces"] == {"jti": stale.a.jti, "seq": stale.a.seq,
                                 "refused": "stale_seq"}
    done = v2.bob.review(cloud, "reissue", stale.request_id, "--reason", REISSUE)
    assert done.returncode == 0, done.stderr
    assert f"replaces {stale.a.jti}" in done.stdout
    assert f"request {stale.request_id} is now released" in done.stdout

    old, new = _tokens(cloud, stale.request_id)
    assert old.jti == stale.a.jti
    assert old.status == "superseded"
    assert new.jti == entry["jti"]  # exactly the payload bob was shown and signed
    assert new.seq > stale.b.seq
    assert new.status in ("issued", "published")
    assert (new.window_start, new.window_end, new.basis) == (
        stale.a.window_start, stale.a.window_end, stale.a.basis)
    assert device_verdict(cloud, stale.device.device_id, old.jws, replay) == "stale_seq"
    claims = device_verdict(cloud, stale.device.device_id, new.jws, replay)
    assert isinstance(claims, ReleaseClaims), claims
    first = device_verdict(cloud, stale.device.device_id, stale.a.jws, None)
    assert isinstance(first, ReleaseClaims), first
    assert (claims.case, claims.recipient, claims.window, claims.warrant) == (
        first.case, first.recipient, first.window, first.warrant)
    assert claims.jti == new.jti
    assert claims.seq == new.seq

    [entry] = _audit(cloud, "token.reissued")
    assert (entry["old_jti"], entry["new_jti"], entry["refused"]) == (
        stale.a.jti, new.jti, "stale_seq")
    assert (entry["reviewer"], entry["org"], entry["reason"]) == ("bob", "beta-review", REISSUE)
    assert entry["kid"] == key_id(v2.bob.key().public_key())
    assert cloud.service.core.audit.verify().entries > 0

    # re-issued once: the new token is not refused, nothing more to re-issue
    again = v2.alice.review(cloud, "reissue", stale.request_id, "--reason", REISSUE)
    assert again.returncode == 1
    assert "not_reissuable" in again.stderr


def test_a_signature_by_another_reviewer_or_over_another_payload_is_refused(v2: V2) -> None:
    cloud = v2.cloud
    stale = _make_stale(v2)
    before = _snapshot(cloud, stale.request_id)
    prepared = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                              headers=v2.alice.headers).json()
    [entry] = prepared["payloads"]
    alice_kid = key_id(v2.alice.key().public_key())
    url = f"/v1/requests/{stale.request_id}/reissue-signatures"

    # alice's genuine signature, posted by bob under her kid: not bob's key
    genuine = [{"jti": entry["jti"], **sign_detached(entry["payload"], v2.alice.key()).to_json()}]
    response = cloud.http.post(url, headers=v2.bob.headers,
                               json={"kid": alice_kid, "reason": REISSUE, "signatures": genuine})
    assert response.status_code == 403, response.text
    # bob's own key, but over another payload than the prepared one
    other = sign_detached(entry["payload"][:-4] + "AAAA", v2.bob.key())
    response = cloud.http.post(url, headers=v2.bob.headers, json={
        "kid": key_id(v2.bob.key().public_key()), "reason": REISSUE,
        "signatures": [{"jti": entry["jti"], **other.to_json()}]})
    assert response.status_code == 400, response.text
    assert entry["jti"] in response.json()["error"]["message"]
    # an approval's route does not take a re-issue signature either
    response = cloud.http.post(f"/v1/requests/{stale.request_id}/signatures",
                               headers=v2.alice.headers,
                               json={"kid": alice_kid, "reason": REISSUE,
                                     "signatures": genuine})
    assert response.status_code == 409, response.text
    assert _snapshot(cloud, stale.request_id) == before

    # the positive control: alice's own signature over the prepared payload
    response = cloud.http.post(url, headers=v2.alice.headers,
                               json={"kid": alice_kid, "reason": REISSUE, "signatures": genuine})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "released"


def test_a_request_no_longer_lawful_is_refused_when_the_signature_arrives(v2: V2) -> None:
    cloud = v2.cloud
    stale = _make_stale(v2)
    prepared = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                              headers=v2.alice.headers).json()
    [entry] = prepared["payloads"]
    body = {"kid": key_id(v2.alice.key().public_key()), "reason": REISSUE,
            "signatures": [{"jti": entry["jti"],
                            **sign_detached(entry["payload"], v2.alice.key()).to_json()}]}
    before = _snapshot(cloud, stale.request_id)
    real = cloud.service.core.clock
    cloud.service.core.clock = lambda: real() + timedelta(days=11)  # the warrant expired
    try:
        response = cloud.http.post(f"/v1/requests/{stale.request_id}/reissue-signatures",
                                   headers=v2.alice.headers, json=body)
    finally:
        cloud.service.core.clock = real
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "warrant_expired"
    # nothing is re-issued, and the payload the law refused leaves `prepared` for good
    # (docs/adr/0013-trust-root-v2.md, "Prepared payloads that can no longer be signed")
    assert _snapshot(cloud, stale.request_id)[:2] == before[:2]
    assert _audit(cloud, "token.reissue_signed") == []
    [discarded] = [t for t in _tokens(cloud, stale.request_id) if t.jti == entry["jti"]]
    assert discarded.status == "discarded"
    assert discarded.status_reason.startswith("warrant_expired: ")
    assert discarded.status_reason.endswith(f"(re-issue of {stale.a.jti})")
    [audited] = _audit(cloud, "token.prepared_discarded")
    assert audited["code"] == "warrant_expired"
    assert [t["jti"] for t in audited["tokens"]] == [entry["jti"]]
    # the same signature, the law unchanged: that payload is not signed any more; a new
    # one is prepared and signed
    response = cloud.http.post(f"/v1/requests/{stale.request_id}/reissue-signatures",
                               headers=v2.alice.headers, json=body)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "not_prepared"
    done = v2.alice.review(cloud, "reissue", stale.request_id, "--reason", REISSUE)
    assert done.returncode == 0, done.stderr
    assert _status(cloud, stale.request_id) == "released"


def test_nothing_reissuable_is_refused_and_nothing_is_prepared(v2: V2) -> None:
    cloud = v2.cloud
    agency = cloud.principal("agency", org="metro-pd")
    device = cloud.enroll()
    now = datetime.now(UTC).replace(microsecond=0)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=40), now)
    request_id = _approved(v2, agency, device)  # its token was not refused
    before = _tokens(cloud, request_id)
    response = cloud.http.get(f"/v1/requests/{request_id}/reissue-payload",
                              headers=v2.alice.headers)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "not_reissuable"
    refused = v2.alice.review(cloud, "reissue", request_id, "--reason", REISSUE)
    assert refused.returncode == 1
    assert "[not_reissuable]" in refused.stderr
    assert [(t.jti, t.status) for t in _tokens(cloud, request_id)] == [
        (t.jti, t.status) for t in before]


def test_the_service_alone_cannot_make_a_reissued_token_the_device_accepts(v2: V2) -> None:
    """A compromised host holds the policy key, the escrow key, the store and the prepared
    payload: what it can sign by itself is refused by the device."""
    cloud = v2.cloud
    stale = _make_stale(v2)
    prepared = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                              headers=v2.alice.headers).json()
    [entry] = prepared["payloads"]
    policy = cloud.service.issuer.signer.policy_key
    forged = assemble(entry["payload"], [sign_detached(entry["payload"], policy)]).decode()
    verdict = device_verdict(cloud, stale.device.device_id, forged, Replay(stale.b))
    assert verdict == "review_signature_missing"


def test_an_emergency_is_reissued_only_by_reviewers_of_two_organisations(v2: V2) -> None:
    """As its approval did, an emergency's re-issue needs two reviewers of two
    organisations; after the first, the service holds nothing a device accepts."""
    cloud = v2.cloud
    _agency, device, request_id = _approved_emergency(v2)
    [old] = _tokens(cloud, request_id)
    # the device came back after the token's exp
    late = VerificationContext(device_id=device.device_id, now=old.expires_at.replace(
        tzinfo=UTC) + timedelta(minutes=5), clock_synchronized=True)
    with pytest.raises(TokenRejected) as refused:
        verify_release(old.jws.encode(), root=_root(cloud), context=late, replay=None)
    assert refused.value.code == "expired"
    _refuse(cloud, device.device_id, old, "expired")

    first = v2.alice.review(cloud, "reissue", request_id, "--reason", REISSUE)
    assert first.returncode == 0, first.stderr
    assert "2 reviewer signature(s) needed" in first.stdout
    assert _status(cloud, request_id) == "rejected"
    assert _audit(cloud, "token.reissued") == []
    shown = cloud.http.get(f"/v1/requests/{request_id}/reissue-payload",
                           headers=v2.bob.headers).json()
    assert shown["reviewers_required"] == 2
    [entry] = shown["payloads"]
    assert entry["signed_by"] == ["alice"]
    # what the service holds now (policy key, alice's signature) is refused by the device
    with cloud.service.store.read() as session:
        prepared = session.get(Token, entry["jti"])
        assert prepared is not None
        collected = json.loads(prepared.jws)["signatures"]
    policy = sign_detached(entry["payload"], cloud.service.issuer.signer.policy_key)
    half = assemble(entry["payload"], [policy, *(DetachedSignature(s["protected"],
                                                                   s["signature"])
                                                 for s in collected)]).decode()
    assert device_verdict(cloud, device.device_id, half, None) == "review_signature_missing"
    again = v2.alice.review(cloud, "reissue", request_id, "--reason", REISSUE)
    assert again.returncode == 1
    assert "[already_decided]" in again.stderr

    second = v2.bob.review(cloud, "reissue", request_id, "--reason", REISSUE)
    assert second.returncode == 0, second.stderr
    assert _status(cloud, request_id) == "released"
    superseded, new = _tokens(cloud, request_id)
    assert superseded.status == "superseded"
    assert new.jti == entry["jti"]
    claims = device_verdict(cloud, device.device_id, new.jws, None)
    assert isinstance(claims, ReleaseClaims), claims
    [audited] = _audit(cloud, "token.reissued")
    assert [(r["name"], r["org"]) for r in audited["reviewers"]] == [
        ("alice", "acme-review"), ("bob", "beta-review")]


def test_an_expired_reissue_payload_is_refused_then_prepared_again(v2: V2) -> None:
    """A signature over a prepared payload that has expired since is ``payload_outdated``
    and re-issues nothing; the payload is ``discarded`` (``expired``, audited) at that
    moment, and the next ask prepares a new one."""
    cloud = v2.cloud
    stale = _make_stale(v2)
    [entry] = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                             headers=v2.alice.headers).json()["payloads"]
    with cloud.service.store.transaction() as session:
        session.execute(update(Token).where(Token.jti == entry["jti"])
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    before = _snapshot(cloud, stale.request_id)
    response = cloud.http.post(
        f"/v1/requests/{stale.request_id}/reissue-signatures", headers=v2.alice.headers,
        json={"kid": key_id(v2.alice.key().public_key()), "reason": REISSUE,
              "signatures": [{"jti": entry["jti"], **sign_detached(
                  entry["payload"], v2.alice.key()).to_json()}]})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "payload_outdated"
    assert _snapshot(cloud, stale.request_id)[:2] == before[:2]
    [discarded] = [t for t in _tokens(cloud, stale.request_id) if t.jti == entry["jti"]]
    assert (discarded.status, discarded.status_reason) == (
        "discarded", f"expired: the prepared payload expired (re-issue of {stale.a.jti})")
    [audited] = _audit(cloud, "token.prepared_discarded")
    assert (audited["code"], audited["tokens"][0]["jti"]) == ("expired", entry["jti"])

    done = v2.alice.review(cloud, "reissue", stale.request_id, "--reason", REISSUE)
    assert done.returncode == 0, done.stderr
    statuses = {t.jti: t.status for t in _tokens(cloud, stale.request_id)}
    assert statuses.pop(entry["jti"]) == "discarded"
    assert statuses.pop(stale.a.jti) == "superseded"
    assert list(statuses.values()) in (["issued"], ["published"])


def test_a_payload_the_law_no_longer_allows_leaves_prepared_when_asked_for_again(
    v2: V2,
) -> None:
    """Nobody signed the payload; the warrant expired since. The next reviewer who asks
    for it is refused with the law's code, and at that moment the payload is discarded
    with that reason and audited: it is never left ``prepared`` with nothing to sign it.
    The request's token list shows why."""
    cloud = v2.cloud
    stale = _make_stale(v2)
    [entry] = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                             headers=v2.alice.headers).json()["payloads"]
    real = cloud.service.core.clock
    cloud.service.core.clock = lambda: real() + timedelta(days=11)  # the warrant expired
    try:
        response = cloud.http.get(f"/v1/requests/{stale.request_id}/reissue-payload",
                                  headers=v2.bob.headers)
    finally:
        cloud.service.core.clock = real
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "warrant_expired"
    view = cloud.http.get(f"/v1/requests/{stale.request_id}", headers=v2.bob.headers).json()
    [listed] = [t for t in view["tokens"] if t["jti"] == entry["jti"]]
    assert listed["status"] == "discarded"
    assert listed["status_reason"].startswith("warrant_expired: the request no longer passes")
    assert listed["status_reason"].endswith(f"(re-issue of {stale.a.jti})")
    [(actor, detail)] = _audited(cloud, "token.prepared_discarded")
    assert actor == "reviewer:bob"
    assert detail["code"] == "warrant_expired"
    assert detail["tokens"] == [{"jti": entry["jti"], "device": stale.device.device_id,
                                 "replaces": stale.a.jti, "signatures_dropped": []}]
    assert _audit(cloud, "token.reissue_prepared") != []
    assert cloud.service.core.audit.verify().entries > 0


def test_signatures_dropped_when_a_reissue_is_prepared_again_are_audited(v2: V2) -> None:
    """An emergency's re-issue needs two organisations; alice signed, then the device
    was issued a later token (the payload would be refused ``stale_seq``). When bob asks,
    a new payload is prepared and alice's signature is dropped with the old one: the
    audit says who asked, which token, why, and whose signature went."""
    cloud = v2.cloud
    agency, device, request_id = _approved_emergency(v2)
    [old] = _tokens(cloud, request_id)
    _refuse(cloud, device.device_id, old, "expired")
    first = v2.alice.review(cloud, "reissue", request_id, "--reason", REISSUE)
    assert first.returncode == 0, first.stderr
    [signed] = [t for t in _tokens(cloud, request_id) if t.status == TokenStatus.PREPARED]

    later = _approved(v2, agency, device)  # the device is issued a later token
    [newer] = _tokens(cloud, later)
    assert newer.seq > signed.seq

    shown = cloud.http.get(f"/v1/requests/{request_id}/reissue-payload",
                           headers=v2.bob.headers).json()
    [entry] = shown["payloads"]
    assert entry["jti"] != signed.jti
    assert entry["signed_by"] == []
    [(actor, detail)] = _audited(cloud, "token.prepared_discarded")
    assert actor == "reviewer:bob"
    assert detail["code"] == "later_token"
    assert detail["reason"] == f"a later token was issued to {device.device_id} since"
    assert detail["tokens"] == [{
        "jti": signed.jti, "device": device.device_id, "replaces": old.jti,
        "signatures_dropped": [{"kid": key_id(v2.alice.key().public_key()),
                                "name": "alice", "org": "acme-review"}]}]
    statuses = {t.jti: (t.status, t.status_reason) for t in _tokens(cloud, request_id)}
    assert statuses[signed.jti] == (
        "discarded", f"later_token: a later token was issued to {device.device_id} since "
                     f"(re-issue of {old.jti})")
    assert statuses[entry["jti"]] == ("prepared", f"re-issue of {old.jti}")
