"""The agency's download carries what `doorbell-evidence verify` needs (token, device
identity certificate, trust root): fetched over real HTTP with the real command, the
folder verifies end to end; the certificate names the device's enrolled key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from doorbell_evidence.folder import EvidenceFolder
from protocol.device_identity import verify_device_identity
from protocol.keys import public_key_hex
from protocol.trust_root import load_trust_root
from tests.fixtures.cloud import CloudServer
from tests.integration.test_cloud_evidence import (
    device_call,
    manifest_for,
    release,
    sealed_clip,
    upload,
)

TOOL = str(Path(sys.executable).parent / "doorbell-evidence")


def test_fetch_then_verify(cloud: CloudServer, tmp_path: Path) -> None:
    r = release(cloud)
    assert r.agency.recipient is not None
    clips = [("clip-0001", sealed_clip(r.agency.recipient)),
             ("clip-0002", sealed_clip(r.agency.recipient, 20_000))]
    for clip_id, data in clips:
        upload(cloud, r, clip_id, data)
    accepted = device_call(cloud, r, "POST", f"{r.upload}/manifest", manifest_for(r, clips))
    assert accepted.status_code == 200, accepted.text

    listing = cloud.http.get(f"/v1/requests/{r.request_id}/evidence",
                             headers=r.agency.headers).json()
    root = load_trust_root(listing["trust_root"].encode(), now=r.window_end)
    cert = verify_device_identity(
        listing["device_certificates"][r.device.device_id].encode(), root)
    assert public_key_hex(cert.public_key) == public_key_hex(r.device.key.public_key())
    assert set(listing["tokens"]) == {r.jti}

    key_file = tmp_path / "agency.apikey"
    key_file.write_text(r.agency.key + "\n")
    out = tmp_path / "evidence"
    fetched = subprocess.run([TOOL, "fetch", "--api", cloud.url, "--api-key-file",
                              str(key_file), r.request_id, str(out)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert fetched.returncode == 0, fetched.stderr
    assert "fetched 2 clip file(s)" in fetched.stdout
    verified = subprocess.run([TOOL, "verify", str(out)], capture_output=True, text=True,
                              timeout=120, check=False)
    assert verified.returncode == 0, verified.stderr
    assert "verified: 2 clips under 1 token(s)" in verified.stdout

    clip = EvidenceFolder(out).token_dir(r.jti).clip("clip-0002")
    clip.write_bytes(clip.read_bytes()[:-1] + b"\0")
    tampered = subprocess.run([TOOL, "verify", str(out)], capture_output=True, text=True,
                              timeout=120, check=False)
    assert tampered.returncode == 1
    assert "clip-0002.age" in tampered.stderr


def test_fetch_names_a_refusal(cloud: CloudServer, tmp_path: Path) -> None:
    key_file = tmp_path / "wrong.apikey"
    key_file.write_text("not-a-key\n")
    result = subprocess.run([TOOL, "fetch", "--api", cloud.url, "--api-key-file",
                             str(key_file), "req-1", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert "Traceback" not in result.stderr
