"""Devices enrolled after the root keys went offline get their identity certificate from
`cloud-stub root certify --keys DIR`, run where the keys are (the agency checks a
device's manifests against it: docs/protocol.md, "Evidence an agency can check")."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from cloud_stub.cli import main
from cloud_stub.provision.device_certs import certificate_path
from protocol.device_identity import verify_device_identity
from protocol.keys import public_key_hex
from protocol.trust_root import load_trust_root
from tests.fixtures.deployment import TestDeployment


def test_root_certify_certifies_devices_enrolled_while_the_root_keys_were_away(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = fresh_deployment
    root_dir = str(d.layout.root)
    before = d.new_device_id("before")
    d.enroll_device(before)  # the root keys are here: certified at enrolment
    kept = certificate_path(d.layout, before).read_bytes()
    away = d.move_keys_off_host() / "offline-root"

    late = d.new_device_id("late")
    capsys.readouterr()
    assert main(["devices", "enroll", late, "--owner-recipient", d.owner.recipient,
                 "--deployment", root_dir]) == 0
    out = capsys.readouterr().out
    assert f"no identity certificate for {late}" in out
    assert "cloud-stub root certify --keys DIR" in out
    assert not certificate_path(d.layout, late).exists()

    one = tmp_path / "one-key"
    one.mkdir()
    first = sorted(away.glob("*.key"))[0]
    shutil.copy(first, one / first.name)
    assert main(["root", "certify", "--keys", str(one), "--deployment", root_dir]) == 1
    err = capsys.readouterr().err
    assert "holds 1 of the root role's keys" in err
    assert "a certificate needs 2" in err
    assert not certificate_path(d.layout, late).exists()

    assert main(["root", "certify", "--keys", str(away), "--deployment", root_dir]) == 0
    assert f"for 1 device(s): {late}" in capsys.readouterr().out
    root = load_trust_root(d.layout.trust_root.read_bytes(), now=dt.datetime.now(dt.UTC))
    cert = verify_device_identity(certificate_path(d.layout, late).read_bytes(), root)
    enrolled = (d.layout.device_record(late) / "identity.pub").read_text().strip()
    assert cert.device == late
    assert public_key_hex(cert.public_key) == enrolled
    assert certificate_path(d.layout, before).read_bytes() == kept  # not made again

    assert main(["root", "certify", "--keys", str(away), "--deployment", root_dir]) == 0
    assert "every enrolled device has its identity certificate already" in (
        capsys.readouterr().out)
