"""`cloud-stub devices owner-cert` against a real mosquitto and the command line.

A device enrolled before owner credentials existed has a record without
``owner-mqtt.pem`` and no owner bundle, and the ACL it was given names no owner: the
tests make one by enrolling and then taking that material away. The command issues the
owner's certificate and bundle with enrolment's code; the owner connects with the
bundle's files and topics as an owner's application would. `--replace` revokes the
certificate in force, so a lost bundle is refused at the TLS handshake after a restart
while the new one works.

Every absence stands beside a positive control on the same connection or broker, as in
test_owner_acl.py: a refused TLS client is the broker's silence to a CONNECT
(`raw_connect` returns b""), an accepted one gets CONNACK 0.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from cloud_stub.provision.deployment import write_broker_acl
from cloud_stub.provision.revocations import revocation_path
from protocol.bundle import OwnerBundleLayout
from protocol.topics import DeviceTopics
from tests.fixtures.broker import (
    Broker,
    Inbox,
    publish,
    running_broker,
    subscribe,
)
from tests.fixtures.deployment import ClientCredentials, OperatorCli, TestDeployment
from tests.integration.test_owner_acl import _until
from tests.integration.test_revoke import _connects, _serial

REASON = "phone lost on the bus"


def _creds(owner: OwnerBundleLayout) -> ClientCredentials:
    return ClientCredentials(owner.ca_cert, owner.mqtt_cert, owner.mqtt_key)


def _owner(broker: Broker, owner: OwnerBundleLayout, inbox: Inbox) -> mqtt.Client:
    device_id = owner.device_id_file.read_text().strip()
    return broker.client(f"owner.{device_id}", credentials=_creds(owner), inbox=inbox)


def _enroll_old_style(d: TestDeployment, stem: str) -> str:
    """A device as a deployment from before owner credentials holds it: enrolled, its
    record without owner-mqtt.pem, no owner bundle, an ACL without its owner."""
    device_id = d.new_device_id(stem)
    d.enroll_device(device_id)
    d.layout.owner_mqtt_cert(device_id).unlink()
    shutil.rmtree(d.layout.owner_bundle(device_id).root)
    write_broker_acl(d.layout, d.prefix)
    return device_id


def _run(d: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str],
         *argv: str) -> tuple[int, str, str]:
    return OperatorCli(d, f"sqlite:///{tmp_path / 'cloud.sqlite3'}", capsys).run(*argv)


def _audit(d: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
           ) -> dict[str, object]:
    code, out, err = _run(d, tmp_path, capsys, "audit", "verify", "--json")
    assert code == 0, err
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.broker
def test_an_old_device_gets_an_owner_that_reads_its_notice_and_not_anothers(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = fresh_deployment
    old = _enroll_old_style(d, "old")
    other = d.new_device_id("other")
    d.enroll_device(other)
    acl = d.broker_paths.acl
    assert f"user owner.{old}\n" not in acl.read_text()
    assert f"user owner.{other}\n" in acl.read_text()  # the control: a new-style device
    entries_before = _audit(d, tmp_path, capsys)["entries"]

    with running_broker(d, tmp_path / "broker") as broker:
        code, out, err = _run(d, tmp_path, capsys, "devices", "owner-cert", old)
        assert code == 0, err
        assert "systemctl reload mosquitto" in out
        owner = d.layout.owner_bundle(old)
        assert str(owner.root) in out
        assert f"user owner.{old}\n" in acl.read_text()
        assert _serial(d.layout.owner_mqtt_cert(old)) == _serial(owner.mqtt_cert)
        broker.reload()

        topics = tomllib.loads(owner.config.read_text())["topics"]
        mine, theirs = DeviceTopics(old, d.prefix), DeviceTopics(other, d.prefix)
        assert topics == {"notice": mine.notice, "status": mine.status}
        inbox = Inbox()
        client = _owner(broker, owner, inbox)
        for topic in (mine.notice, theirs.notice, theirs.status, f"{d.prefix}/#"):
            subscribe(client, topic)
        other_inbox = Inbox()  # the other household's owner: its messages really go out
        subscribe(_owner(broker, d.layout.owner_bundle(other), other_inbox), theirs.notice)
        old_device, other_device = broker.client(old), broker.client(other)
        publish(other_device, theirs.notice, b"other notice")
        publish(old_device, mine.notice, b"old notice")  # the control, last

        seen = _until(inbox, b"old notice")
        seen += inbox.drain()
        # Twice, one a subscription: mine.notice and prefix/# both match it.
        assert {(m.topic, m.payload) for m in seen} == {(mine.notice, b"old notice")}
        assert other_inbox.get().payload == b"other notice"

    report = _audit(d, tmp_path, capsys)
    assert report["ok"] is True
    assert report["entries"] == int(str(entries_before)) + 1


@pytest.mark.broker
def test_replace_refuses_the_lost_owner_cert_after_a_restart_and_the_new_one_reads(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = fresh_deployment
    device_id = d.new_device_id("cam")
    d.enroll_device(device_id)
    lost = OwnerBundleLayout(d.scratch / "lost-phone")  # the copy a thief now holds
    shutil.copytree(d.layout.owner_bundle(device_id).root, lost.root)
    old_serial = _serial(lost.mqtt_cert)
    topics = DeviceTopics(device_id, d.prefix)

    with running_broker(d, tmp_path / "broker") as broker:
        assert _connects(broker, _creds(lost))  # the control, before
        code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", device_id)
        assert code == 1
        assert "--replace" in err
        assert "[already_exists]" in err
        assert _serial(d.layout.owner_mqtt_cert(device_id)) == old_serial  # untouched

        code, out, err = _run(d, tmp_path, capsys, "devices", "owner-cert", device_id,
                              "--replace", "--reason", REASON)
        assert code == 0, err
        assert "systemctl restart mosquitto" in out
        assert f"{old_serial:x}" in out
        assert "WARNING" not in out  # init's config names the CRL
        new = d.layout.owner_bundle(device_id)
        new_serial = _serial(new.mqtt_cert)
        assert new_serial != old_serial
        assert _serial(d.layout.owner_mqtt_cert(device_id)) == new_serial
        broker.restart()

        assert not _connects(broker, _creds(lost))
        assert _connects(broker, _creds(new))
        assert _connects(broker, d.credentials(device_id))  # the device stays in service
        inbox = Inbox()
        subscribe(_owner(broker, new, inbox), topics.notice)
        publish(broker.client(device_id), topics.notice, b"notice after the replace")
        assert inbox.get().payload == b"notice after the replace"

    crl = x509.load_pem_x509_crl(d.broker_paths.crl.read_bytes())
    assert {r.serial_number for r in crl} == {old_serial}
    record = json.loads(revocation_path(d.layout, device_id).read_text())
    assert record["scope"] == "owner"
    assert record["reason"] == REASON
    assert f"user owner.{device_id}\n" in d.broker_paths.acl.read_text()


def test_owner_only_revocation_then_replace_then_device_revocation(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lost phone revoked first with `devices revoke --owner-only` (the ACL drops the
    owner), then a new credential (the ACL names the owner again, the CRL keeps the old
    serial), then the doorbell stolen: every serial is in the CRL and the owner is gone."""
    d = fresh_deployment
    device_id = d.new_device_id("cam")
    d.enroll_device(device_id)
    acl = d.broker_paths.acl
    stanza = f"user owner.{device_id}\n"
    first = _serial(d.layout.owner_mqtt_cert(device_id))
    code, _, err = _run(d, tmp_path, capsys, "devices", "revoke", device_id, "--owner-only",
                        "--reason", REASON)
    assert code == 0, err
    assert stanza not in acl.read_text()

    code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", device_id)
    assert code == 1  # a revoked credential is still one: say --replace
    assert "--replace" in err
    code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", device_id, "--replace")
    assert code == 0, err
    second = _serial(d.layout.owner_mqtt_cert(device_id))
    assert stanza in acl.read_text()
    crl = x509.load_pem_x509_crl(d.broker_paths.crl.read_bytes())
    assert {r.serial_number for r in crl} == {first}

    code, _, err = _run(d, tmp_path, capsys, "devices", "revoke", device_id, "--reason",
                        "doorbell stolen")
    assert code == 0, err
    assert stanza not in acl.read_text()
    crl = x509.load_pem_x509_crl(d.broker_paths.crl.read_bytes())
    assert {r.serial_number for r in crl} == {
        first, second, _serial(d.layout.device_record(device_id) / "mqtt.pem")}
    code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", device_id, "--replace")
    assert code == 1
    assert "[device_revoked]" in err
    assert _serial(d.layout.owner_mqtt_cert(device_id)) == second  # nothing issued
    assert _audit(d, tmp_path, capsys)["ok"] is True


def test_refusals_write_nothing(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = fresh_deployment
    code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", "never-enrolled")
    assert code == 1
    assert "'never-enrolled' is not enrolled" in err
    assert "[not_enrolled]" in err

    old = _enroll_old_style(d, "old")
    busy = d.scratch / "busy"
    busy.mkdir()
    (busy / "something").write_text("kept")
    code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", old, "--out", str(busy))
    assert code == 1
    assert "[already_exists]" in err
    assert not d.layout.owner_mqtt_cert(old).exists()
    assert [p.name for p in busy.iterdir()] == ["something"]
    assert f"user owner.{old}\n" not in d.broker_paths.acl.read_text()

    # The control: the same device and an empty --out directory.
    out_dir = d.scratch / "owner-out"
    out_dir.mkdir()
    code, _, err = _run(d, tmp_path, capsys, "devices", "owner-cert", old,
                        "--out", str(out_dir))
    assert code == 0, err
    assert (out_dir / "mqtt.key").stat().st_mode & 0o077 == 0
    assert _serial(out_dir / "mqtt.pem") == _serial(d.layout.owner_mqtt_cert(old))
    assert not d.layout.owner_bundle(old).root.exists()
    assert f"user owner.{old}\n" in d.broker_paths.acl.read_text()
