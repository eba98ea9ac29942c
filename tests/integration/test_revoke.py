"""`cloud-stub devices revoke` against a real mosquitto, the real cloud over HTTP and the
command line.

Every refusal stands beside a positive control: the same certificate connecting, or the
same request succeeding, before the revocation, and another device connecting after it.
A refused TLS client is seen as the broker's silence to an MQTT CONNECT (`raw_connect`
returns b""); an accepted one gets CONNACK 0.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from cloud_stub.cli import main
from cloud_stub.provision.revocations import Scope, revocation_path
from cloud_stub.provision.revoke import revoke_device
from cloud_stub.store.models import AuditRow, Token
from protocol.bundle import DeploymentLayout
from tests.fixtures.broker import (
    CONNACK_OK,
    Broker,
    publish,
    running_broker,
    tls_context,
)
from tests.fixtures.cloud import CloudServer
from tests.fixtures.deployment import ClientCredentials, OperatorCli, TestDeployment
from tests.integration.test_cloud_evidence import device_call, release, sealed_clip

REASON = "stolen from the porch"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _serial(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def _owner_creds(deployment: TestDeployment, device_id: str) -> ClientCredentials:
    owner = deployment.layout.owner_bundle(device_id)
    return ClientCredentials(owner.ca_cert, owner.mqtt_cert, owner.mqtt_key)


def _connects(broker: Broker, creds: ClientCredentials) -> bool:
    answer = broker.raw_connect(tls_context(creds, broker.ca))
    assert answer in (CONNACK_OK, b""), answer  # nothing in between is expected
    return answer == CONNACK_OK


def _crl(layout: DeploymentLayout) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((layout.root / "broker" / "crl.pem").read_bytes())


def _revoke(deployment: TestDeployment, device_id: str, scope: Scope = Scope.DEVICE) -> None:
    revoke_device(deployment.layout, device_id, reason=REASON, scope=scope, now=_now())


# --- the broker -----------------------------------------------------------------------------


@pytest.mark.broker
def test_a_revoked_device_is_refused_after_a_restart_and_another_still_connects(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """Device scope: the device's and its owner's certificates are refused at the TLS
    handshake; a second enrolled device and its owner connect as before."""
    d = fresh_deployment
    stolen, other = d.new_device_id("stolen"), d.new_device_id("other")
    d.enroll_device(stolen)
    d.enroll_device(other)
    with running_broker(d, tmp_path / "broker") as broker:
        for cn in (stolen, other):  # positive controls, before
            assert _connects(broker, d.credentials(cn))
            assert _connects(broker, _owner_creds(d, cn))
        _revoke(d, stolen)
        broker.restart()
        assert not _connects(broker, d.credentials(stolen))
        assert not _connects(broker, _owner_creds(d, stolen))
        assert _connects(broker, d.credentials(other))
        assert _connects(broker, _owner_creds(d, other))
        assert "certificate revoked" in broker.log() or "verify failed" in broker.log()


@pytest.mark.broker
def test_a_reload_refuses_new_handshakes_but_keeps_a_held_session(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """What `revoke` tells the operator: mosquitto 2.0 reads the CRL again on SIGHUP, but
    only new handshakes are checked; a session the device already holds survives the
    reload (it still gets its PUBACK) and ends only with a restart."""
    d = fresh_deployment
    stolen = d.new_device_id("stolen")
    d.enroll_device(stolen)
    topic = f"{d.prefix}/{stolen}/status"
    with running_broker(d, tmp_path / "broker") as broker:
        held = broker.client(stolen)
        _revoke(d, stolen)
        assert _connects(broker, d.credentials(stolen))  # no signal yet: CRL not re-read
        broker.reload()
        assert not _connects(broker, d.credentials(stolen))
        publish(held, topic, b"still here after the reload")  # waits for its PUBACK
        assert held.is_connected()
        broker.restart()
        assert not _connects(broker, d.credentials(stolen))
        assert _connects(broker, d.credentials("cloud"))


@pytest.mark.broker
def test_owner_only_refuses_the_owner_and_keeps_the_device(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    d = fresh_deployment
    device_id = d.new_device_id("phone-lost")
    d.enroll_device(device_id)
    with running_broker(d, tmp_path / "broker") as broker:
        assert _connects(broker, _owner_creds(d, device_id))
        _revoke(d, device_id, Scope.OWNER)
        broker.restart()
        assert not _connects(broker, _owner_creds(d, device_id))
        assert _connects(broker, d.credentials(device_id))


# --- the CRL and the ACL --------------------------------------------------------------------


def test_the_crl_verifies_under_the_ca_and_lists_exactly_the_revoked_serials(
    fresh_deployment: TestDeployment,
) -> None:
    d = fresh_deployment
    layout = d.layout
    ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    empty = _crl(layout)  # as `init` wrote it
    assert empty.is_signature_valid(ca_key)
    assert len(empty) == 0
    assert empty.next_update_utc == ca.not_valid_after_utc  # never stale before the CA

    a, b, c = (d.new_device_id(s) for s in ("a", "b", "c"))
    for device_id in (a, b, c):
        d.enroll_device(device_id)
    _revoke(d, a)
    _revoke(d, b, Scope.OWNER)
    crl = _crl(layout)
    assert crl.is_signature_valid(ca_key)
    assert crl.issuer == ca.subject
    assert crl.next_update_utc == ca.not_valid_after_utc
    expected = {_serial(layout.device_record(a) / "mqtt.pem"),
                _serial(layout.owner_mqtt_cert(a)), _serial(layout.owner_mqtt_cert(b))}
    assert {r.serial_number for r in crl} == expected
    # The untouched ones are certificates of the same CA, not listed.
    assert _serial(layout.device_record(b) / "mqtt.pem") not in expected
    assert _serial(layout.device_record(c) / "mqtt.pem") not in expected

    record = json.loads(revocation_path(layout, a).read_text())
    assert record["scope"] == "device"
    assert record["reason"] == REASON
    assert {int(s, 16) for s in record["serials"]} == {
        _serial(layout.device_record(a) / "mqtt.pem"), _serial(layout.owner_mqtt_cert(a))}
    assert json.loads(revocation_path(layout, b).read_text())["scope"] == "owner"


def test_the_acl_loses_the_revoked_owners_stanza(fresh_deployment: TestDeployment) -> None:
    d = fresh_deployment
    a, b, c = (d.new_device_id(s) for s in ("a", "b", "c"))
    for device_id in (a, b, c):
        d.enroll_device(device_id)
    acl = d.broker_paths.acl
    for device_id in (a, b, c):
        assert f"user owner.{device_id}\n" in acl.read_text()
    _revoke(d, a)
    _revoke(d, b, Scope.OWNER)
    text = acl.read_text()
    assert f"user owner.{a}\n" not in text
    assert f"{d.prefix}/{a}/notice" not in text
    assert f"user owner.{b}\n" not in text
    assert f"user owner.{c}\n" in text
    assert f"{d.prefix}/{c}/notice" in text
    # A later enrolment renders the ACL again and does not bring them back.
    d.enroll_device(d.new_device_id("d"))
    assert f"user owner.{a}\n" not in acl.read_text()
    assert f"user owner.{c}\n" in acl.read_text()


# --- the cloud over HTTP --------------------------------------------------------------------


def _cli_revoke(cloud: CloudServer, store: Path, device_id: str, *extra: str) -> int:
    return main(["devices", "revoke", device_id, "--reason", REASON, *extra,
                 "--deployment", str(cloud.deployment.layout.root),
                 "--store-url", f"sqlite:///{store}"])


def test_a_request_naming_a_revoked_device_is_refused_with_its_code_and_no_token(
    cloud: CloudServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI revokes against the running service's store; the service refuses the
    device at once (no restart). Also the approval: a request submitted before the
    revocation is refused ``device_revoked`` when approved after it (the approval re-runs
    the legal check, docs/policy.md), and no token is issued for the device."""
    agency = cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    device = cloud.enroll()
    world = cloud.world(agency, device.device_id)
    before = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert before.status_code == 201, before.text  # the control

    assert _cli_revoke(cloud, tmp_path / "cloud.sqlite3", device.device_id) == 0
    capsys.readouterr()

    after = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert after.status_code == 422
    assert after.json()["error"]["code"] == "device_revoked"
    approved = cloud.http.post(f"/v1/requests/{before.json()['id']}/approve",
                               json={"reason": "Warrant verified with the issuing court."},
                               headers=reviewer.headers)
    assert approved.status_code == 409, approved.text
    assert approved.json()["error"]["code"] == "device_revoked"
    view = cloud.http.get(f"/v1/requests/{before.json()['id']}", headers=agency.headers).json()
    assert (view["status"], view["tokens"]) == ("pending_review", [])
    with cloud.service.store.transaction() as session:
        tokens = session.execute(
            select(Token).where(Token.device_id == device.device_id)).scalars().all()
        assert tokens == []
        audit = session.execute(
            select(AuditRow).where(AuditRow.action == "device.revoked")).scalars().all()
        assert [(a.subject, a.detail["scope"]) for a in audit] == [
            (f"device:{device.device_id}", "device")]


def test_a_revoked_devices_evidence_put_is_refused(
    cloud: CloudServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = release(cloud)
    assert r.agency.recipient is not None
    clip = sealed_clip(r.agency.recipient)
    url = f"{r.upload}/c1"
    half = len(clip) // 2
    first = device_call(cloud, r, "PUT", f"{url}?offset=0", clip[:half])
    assert first.status_code == 200
    assert first.json() == {"offset": half}

    assert _cli_revoke(cloud, tmp_path / "cloud.sqlite3", r.device.device_id) == 0
    capsys.readouterr()
    refused = device_call(cloud, r, "PUT", f"{url}?offset={half}", clip[half:])
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert "revoked" in refused.json()["error"]["message"]
    # Owner-only leaves the device's uploads alone: another device, revoked so, uploads.
    other = release(cloud, r.agency)
    assert _cli_revoke(cloud, tmp_path / "cloud.sqlite3", other.device.device_id,
                       "--owner-only") == 0
    ok = device_call(cloud, other, "PUT", f"{other.upload}/c1?offset=0", clip[:half])
    assert ok.status_code == 200, ok.text


# --- the command line -----------------------------------------------------------------------


def _run(d: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str],
         *argv: str) -> tuple[int, str, str]:
    return OperatorCli(d, f"sqlite:///{tmp_path / 'cli.sqlite3'}", capsys).run(*argv)


def test_cli_names_the_action_refuses_an_unknown_id_and_is_idempotent(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = fresh_deployment
    device_id = d.new_device_id("cam")
    d.enroll_device(device_id)

    code, out, err = _run(d, tmp_path, capsys, "devices", "revoke", "never-enrolled",
                          "--reason", REASON)
    assert code == 1
    assert "'never-enrolled' is not enrolled" in err
    assert "[not_enrolled]" in err
    code, _, err = _run(d, tmp_path, capsys, "devices", "revoke", "Bad_Id", "--reason", REASON)
    assert code == 1
    assert "invalid_name" in err

    code, out, err = _run(d, tmp_path, capsys, "devices", "revoke", device_id,
                          "--owner-only", "--reason", "phone lost")
    assert code == 0, err
    assert "systemctl restart mosquitto" in out
    assert "WARNING" not in out  # init's config names the CRL
    code, out, err = _run(d, tmp_path, capsys, "devices", "revoke", device_id,
                          "--reason", REASON)
    assert code == 0, err  # widened to the device
    first = revocation_path(d.layout, device_id).read_text()
    assert json.loads(first)["scope"] == "device"
    assert json.loads(first)["history"][0]["reason"] == "phone lost"

    code, out, err = _run(d, tmp_path, capsys, "devices", "revoke", device_id,
                          "--reason", "a second time")
    assert code == 0, err
    assert "revoked already" in out
    assert "systemctl restart mosquitto" in out
    assert revocation_path(d.layout, device_id).read_text() == first  # unchanged
    assert len(_crl(d.layout)) == 2

    code, out, err = _run(d, tmp_path, capsys, "audit", "verify")
    assert code == 0, err
    capsys.readouterr()
    code = main(["devices", "enroll", device_id, "--owner-recipient", d.owner.recipient,
                 "--deployment", str(d.layout.root)])
    assert code == 1  # the record exists: a revoked id stays refused
    assert "is enrolled already" in capsys.readouterr().err


def test_revoke_on_a_deployment_from_before_crls_creates_it_and_says_what_to_add(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = fresh_deployment
    paths = d.broker_paths
    # As such a deployment is: no crl.pem, no crlfile line.
    paths.crl.unlink()
    paths.config.write_text("".join(
        line for line in paths.config.read_text().splitlines(keepends=True)
        if not line.startswith("crlfile ")))
    device_id = d.new_device_id("old")
    d.enroll_device(device_id)
    code, out, err = _run(d, tmp_path, capsys, "devices", "revoke", device_id,
                          "--reason", REASON, "--no-store")
    assert code == 0, err
    assert paths.crl.is_file()
    assert len(_crl(d.layout)) == 2
    assert "WARNING" in out
    assert f"crlfile {paths.crl.resolve()}" in out
