"""A reviewer approves over real HTTP with a key that never leaves their machine
(docs/adr/0013-trust-root-v2.md).

The deployment moves its decisive keys off the host and rotates to trust root v2 with the
operator commands; the reviewer makes a key with `doorbell-review keygen` under a config
directory of their own, and approves with `doorbell-review approve` against the cloud
stub serving on a loopback port. The token the service then issues passes the device's
`verify_release`; the service's directory and database never contain the reviewer's key.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.policy.courts import load_court_key
from cloud_stub.provision.trust_roots import add_reviewer, load_draft, save_draft, sign_draft
from protocol.keys import private_key_from_pem, private_key_to_pem, public_key_hex
from protocol.release_check import verify_release
from protocol.release_signing import sign_detached
from protocol.token import VerificationContext
from protocol.trust_root_v2 import TrustRootV2, load_any_trust_root
from tests.fixtures.cloud import CloudServer, open_cloud
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.policy import COURT_ID, PolicyWorld

BIN = Path(sys.executable).parent
V2Cloud = tuple[CloudServer, Path, str, Path]  # server, reviewer's home, API key, keys moved off


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def _cloud_stub(deployment: TestDeployment, store: str, *argv: str
                ) -> subprocess.CompletedProcess[str]:
    return _run(str(BIN / "cloud-stub"), *argv, "--deployment", str(deployment.layout.root),
                "--store-url", store)


@pytest.fixture
def v2_cloud(fresh_deployment: TestDeployment, tmp_path: Path) -> Iterator[V2Cloud]:
    """A deployment rotated to trust root v2 with reviewer alice (acme-review), served."""
    d = fresh_deployment
    away = d.move_keys_off_host()
    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"
    home = tmp_path / "alice-home"
    keygen = _run(str(BIN / "doorbell-review"), "keygen", env={"XDG_CONFIG_HOME": str(home)})
    assert keygen.returncode == 0, keygen.stderr
    public = next(line.split()[-1] for line in keygen.stdout.splitlines()
                  if line.startswith("public key:"))
    added = _cloud_stub(d, store, "reviewers", "add", "alice", "--org", "acme-review",
                        "--public-key", public, "--json")
    assert added.returncode == 0, added.stderr
    import json

    api_key = json.loads(added.stdout)["api_key"]
    signed = _cloud_stub(d, store, "root", "sign", "--keys", str(away / "offline-root"))
    assert signed.returncode == 0, signed.stderr
    for cloud in open_cloud(d, tmp_path, store_url=store):
        yield cloud, home, api_key, away
        break


def _warrant_request(cloud: CloudServer, away: Path) -> tuple[str, str]:
    agency = cloud.principal("agency", org="metro-pd")
    device = cloud.enroll()
    now = datetime.now(UTC).replace(microsecond=0)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=40), now)
    world = PolicyWorld(now=now, court_key=load_court_key(away / "courts" / f"{COURT_ID}.key"),
                        recipient=agency.recipient or "")
    response = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending_review", body
    return str(body["id"]), device.device_id


def test_reviewer_approves_with_a_local_key_and_the_device_accepts(
    v2_cloud: V2Cloud, tmp_path: Path
) -> None:
    cloud, home, api_key, away = v2_cloud
    request_id, device_id = _warrant_request(cloud, away)
    env = {"XDG_CONFIG_HOME": str(home), "DOORBELL_REVIEW_API": cloud.url,
           "DOORBELL_REVIEW_API_KEY": api_key}
    shown = _run(str(BIN / "doorbell-review"), "show", request_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "payload sha256:" in shown.stdout
    assert device_id in shown.stdout
    assert "search_warrant" in shown.stdout
    approved = _run(str(BIN / "doorbell-review"), "approve", request_id, "--reason",
                    "warrant checked against the court's docket", env=env)
    assert approved.returncode == 0, approved.stderr
    view = cloud.http.get(f"/v1/requests/{request_id}",
                          headers={"Authorization": f"Bearer {api_key}"}).json()
    assert view["status"] == "released", view

    root = load_any_trust_root(cloud.deployment.layout.trust_root.read_bytes(),
                               now=datetime.now(UTC))
    assert isinstance(root, TrustRootV2)
    with cloud.service.store.read() as session:
        from sqlalchemy import select

        from cloud_stub.store.models import Token

        tokens = list(session.execute(select(Token).where(Token.request_id == request_id))
                      .scalars())
    assert [t.status for t in tokens] in (["issued"], ["published"])
    context = VerificationContext(device_id=device_id, now=datetime.now(UTC),
                                  clock_synchronized=True)
    claims = verify_release(tokens[0].jws.encode(), root=root, context=context, replay=None)
    assert claims.warrant is not None
    assert claims.case.request_id == request_id

    # The reviewer's key is nowhere on the service host.
    key = private_key_from_pem((home / "doorbell-review" / "reviewer.key").read_bytes())
    secrets = [private_key_to_pem(key), key.private_bytes_raw(),
               key.private_bytes_raw().hex().encode(),
               base64.b64encode(key.private_bytes_raw())]
    scanned = 0
    for path in [*cloud.deployment.layout.root.rglob("*"), *tmp_path.glob("cloud.sqlite3*")]:
        if path.is_file() and home not in path.parents:
            data = path.read_bytes()
            scanned += 1
            assert not any(secret in data for secret in secrets), path
    assert scanned > 10


def test_the_service_takes_a_signature_only_from_the_reviewer_whose_key_it_is(
    v2_cloud: V2Cloud,
) -> None:
    cloud, home, api_key, away = v2_cloud
    request_id, _ = _warrant_request(cloud, away)
    mallory = cloud.principal("reviewer", org="other-review")
    alice_key = private_key_from_pem((home / "doorbell-review" / "reviewer.key").read_bytes())
    from protocol.keys import key_id

    kid = key_id(alice_key.public_key())
    prepared = cloud.http.get(f"/v1/requests/{request_id}/signing-payload",
                              headers=mallory.headers).json()
    sigs = [{"jti": p["jti"], **sign_detached(p["payload"], alice_key).to_json()}
            for p in prepared["payloads"]]
    # even with alice's genuine signature, another reviewer cannot post under her kid
    response = cloud.http.post(f"/v1/requests/{request_id}/signatures", headers=mallory.headers,
                               json={"kid": kid, "reason": "not my key at all", "signatures": sigs})
    assert response.status_code == 403, response.text
    # the old server-side approval no longer signs anything under v2
    response = cloud.http.post(f"/v1/requests/{request_id}/approve", headers=mallory.headers,
                               json={"reason": "server-side approval"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "reviewer_signature_required"
    # alice's own signature over another payload is refused, naming the token
    jti = prepared["payloads"][0]["jti"]
    other = sign_detached(prepared["payloads"][0]["payload"][:-4] + "AAAA", alice_key)
    response = cloud.http.post(
        f"/v1/requests/{request_id}/signatures",
        headers={"Authorization": f"Bearer {api_key}"},
        json={"kid": kid, "reason": "checked the warrant twice",
              "signatures": [{"jti": jti, **other.to_json()}]})
    assert response.status_code == 400, response.text
    assert jti in response.json()["error"]["message"]
    view = cloud.http.get(f"/v1/requests/{request_id}", headers=mallory.headers).json()
    assert view["status"] == "pending_review"
    assert view["decisions"] == []


def test_a_denial_discards_the_prepared_payloads(v2_cloud: V2Cloud) -> None:
    cloud, home, api_key, away = v2_cloud
    request_id, _ = _warrant_request(cloud, away)
    env = {"XDG_CONFIG_HOME": str(home), "DOORBELL_REVIEW_API": cloud.url,
           "DOORBELL_REVIEW_API_KEY": api_key}
    assert _run(str(BIN / "doorbell-review"), "show", request_id, env=env).returncode == 0
    denied = _run(str(BIN / "doorbell-review"), "deny", request_id, "--reason",
                  "The window is broader than the affidavit supports.", env=env)
    assert denied.returncode == 0, denied.stderr
    assert "denied" in denied.stdout
    view = cloud.http.get(f"/v1/requests/{request_id}",
                          headers={"Authorization": f"Bearer {api_key}"}).json()
    assert [t["status"] for t in view["tokens"]] == ["discarded"]
    late = _run(str(BIN / "doorbell-review"), "approve", request_id, "--reason",
                "approving after the denial", env=env)
    assert late.returncode == 1
    assert "not waiting for review" in late.stderr


def test_an_unsigned_payload_that_expired_is_prepared_again(v2_cloud: V2Cloud) -> None:
    from sqlalchemy import select, update

    from cloud_stub.store.models import AuditRow, Token

    cloud, _home, api_key, away = v2_cloud
    request_id, _ = _warrant_request(cloud, away)
    headers = {"Authorization": f"Bearer {api_key}"}
    first = cloud.http.get(f"/v1/requests/{request_id}/signing-payload", headers=headers).json()
    with cloud.service.store.transaction() as session:
        session.execute(update(Token).where(Token.request_id == request_id)
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    second = cloud.http.get(f"/v1/requests/{request_id}/signing-payload", headers=headers).json()
    assert second["payloads"][0]["jti"] != first["payloads"][0]["jti"]
    with cloud.service.store.read() as session:
        statuses = sorted(session.execute(
            select(Token.status).where(Token.request_id == request_id)).scalars())
    assert statuses == ["discarded", "prepared"]
    with cloud.service.store.read() as session:
        discarded = session.get(Token, first["payloads"][0]["jti"])
        assert discarded is not None
        assert discarded.status_reason == (
            "expired: the prepared payload expired before anyone signed it")
        [(actor, detail)] = [(r.actor, r.detail) for r in session.execute(
            select(AuditRow).where(AuditRow.action == "token.prepared_discarded")).scalars()]
    assert actor == "reviewer:alice"
    assert detail["code"] == "expired"
    assert [t["jti"] for t in detail["tokens"]] == [first["payloads"][0]["jti"]]


def test_a_signature_over_a_payload_that_expired_is_refused_not_issued(
    v2_cloud: V2Cloud,
) -> None:
    """A token signed after its prepared payload expired would be issued already
    expired: the service refuses the signature (409 ``expired``), records no approval,
    discards the payload nobody had signed and prepares a new one on the next ask."""
    from sqlalchemy import select, update

    from cloud_stub.store.models import AuditRow, Decision, Token
    from protocol.keys import key_id

    cloud, home, api_key, away = v2_cloud
    request_id, _ = _warrant_request(cloud, away)
    headers = {"Authorization": f"Bearer {api_key}"}
    alice_key = private_key_from_pem((home / "doorbell-review" / "reviewer.key").read_bytes())
    [entry] = cloud.http.get(f"/v1/requests/{request_id}/signing-payload",
                             headers=headers).json()["payloads"]
    signature = {"jti": entry["jti"], **sign_detached(entry["payload"], alice_key).to_json()}
    with cloud.service.store.transaction() as session:
        session.execute(update(Token).where(Token.request_id == request_id)
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    response = cloud.http.post(
        f"/v1/requests/{request_id}/signatures", headers=headers,
        json={"kid": key_id(alice_key.public_key()), "reason": "checked the warrant twice",
              "signatures": [signature]})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "expired"
    view = cloud.http.get(f"/v1/requests/{request_id}", headers=headers).json()
    assert view["status"] == "pending_review"
    assert [(t["jti"], t["status"]) for t in view["tokens"]] == [(entry["jti"], "discarded")]
    with cloud.service.store.read() as session:
        assert list(session.execute(
            select(Decision).where(Decision.request_id == request_id)).scalars()) == []
        [detail] = [r.detail for r in session.execute(
            select(AuditRow).where(AuditRow.action == "token.prepared_discarded")).scalars()]
        assert not session.execute(select(AuditRow).where(
            AuditRow.action.in_(["token.issued", "request.approve"]))).first()
    assert detail["code"] == "expired"
    [again] = cloud.http.get(f"/v1/requests/{request_id}/signing-payload",
                             headers=headers).json()["payloads"]
    assert again["jti"] != entry["jti"]


def test_a_denial_anywhere_discards_the_prepared_payloads_with_its_reason(
    v2_cloud: V2Cloud, tmp_path: Path
) -> None:
    """The operator's `cloud-stub requests deny` (and the console, through the same
    `Reviewing.decide`) discards the payloads prepared for signing as the API's denial
    does, names the reason and audits it, with the signature dropped."""
    from sqlalchemy import select

    from cloud_stub.store.models import AuditRow, Token

    cloud, _home, api_key, away = v2_cloud
    request_id, _ = _warrant_request(cloud, away)
    headers = {"Authorization": f"Bearer {api_key}"}
    [entry] = cloud.http.get(f"/v1/requests/{request_id}/signing-payload",
                             headers=headers).json()["payloads"]
    bob = cloud.principal("reviewer", org="beta-review")
    with cloud.service.store.read() as session:
        assert session.get(Token, entry["jti"]) is not None
    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"
    denied = _cloud_stub(cloud.deployment, store, "requests", "deny", request_id,
                         "--reviewer", bob.name, "--reason",
                         "The window is broader than the affidavit supports.")
    assert denied.returncode == 0, denied.stderr
    view = cloud.http.get(f"/v1/requests/{request_id}", headers=headers).json()
    assert view["status"] == "denied"
    assert [(t["jti"], t["status"], t["status_reason"]) for t in view["tokens"]] == [
        (entry["jti"], "discarded", "request_closed: a reviewer denied the request")]
    with cloud.service.store.read() as session:
        [(actor, detail)] = [(r.actor, r.detail) for r in session.execute(
            select(AuditRow).where(AuditRow.action == "token.prepared_discarded")).scalars()]
    assert actor == f"reviewer:{bob.name}"
    assert detail["code"] == "request_closed"
    assert detail["tokens"][0]["jti"] == entry["jti"]


def test_a_service_started_under_v1_signs_nothing_by_itself_once_v2_is_in_force(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    # The operator signs the v2 root while `serve` runs: its v1 path (policy and review
    # keys on this host) stops at that moment, not at the next restart.
    d = fresh_deployment
    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"
    for cloud in open_cloud(d, tmp_path, store_url=store):
        reviewer = cloud.principal("reviewer", org="acme-review")
        before, _ = _warrant_request(cloud, d.layout.root)
        response = cloud.http.post(f"/v1/requests/{before}/approve", headers=reviewer.headers,
                                   json={"reason": "warrant checked with the clerk"})
        assert response.status_code == 200, response.text  # v1: the service signs both

        after, _ = _warrant_request(cloud, d.layout.root)
        now = datetime.now(UTC)
        alice = private_key_to_pem(Ed25519PrivateKey.generate())
        save_draft(d.layout, add_reviewer(load_draft(d.layout, now), "alice", "acme-review",
                                          public_key_hex(private_key_from_pem(alice))))
        away = d.move_keys_off_host()
        assert sign_draft(d.layout, away / "offline-root", now).version == 2

        response = cloud.http.post(f"/v1/requests/{after}/approve", headers=reviewer.headers,
                                   json={"reason": "warrant checked with the clerk"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "reviewer_signature_required"
        with cloud.service.store.read() as session:
            from sqlalchemy import func, select

            from cloud_stub.store.models import Token

            issued = session.execute(select(func.count()).select_from(Token)
                                     .where(Token.request_id == after)).scalar_one()
        assert issued == 0
        break
