"""`doorbell-evidence verify` on real folders built with the wire contract's own
signers: it accepts a genuine folder and rejects a tampered file, a tampered manifest, a
manifest signed by another device, a device certificate not signed by the root, and a
token that does not cover the manifest's clips (or is another token)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from doorbell_evidence.cli import main
from doorbell_evidence.folder import EvidenceFolder
from doorbell_evidence.verify import EvidenceProblem, verify_folder
from protocol.device_identity import DeviceIdentity, sign_device_identity
from protocol.manifest import EvidenceManifest, ManifestClip, sign_manifest
from protocol.token import Window, sign_token
from tests.unit.protocol_world import DEVICE, NOW, World, make_world, seeded_key

DEVICE_KEY = seeded_key("device-identity")
OTHER_DEVICE_KEY = seeded_key("another-device")
CLIPS = {"clip-a": b"age-encryption.org/v1 first clip" * 50, "clip-b": b"second clip" * 80}


def _manifest(world: World, jti: str = "tok-1") -> EvidenceManifest:
    window = world.claims().window
    start = window.start + timedelta(minutes=5)
    clips = tuple(
        ManifestClip(
            clip_id=clip_id,
            start=start + timedelta(minutes=10 * n),
            end=start + timedelta(minutes=10 * n, seconds=30),
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        for n, (clip_id, data) in enumerate(CLIPS.items())
    )
    return EvidenceManifest(jti=jti, device=DEVICE, clips=clips, created=NOW - timedelta(minutes=1))


def _folder(tmp_path: Path, world: World, *, token: bytes | None = None,
            manifest: bytes | None = None, cert: bytes | None = None) -> EvidenceFolder:
    folder = EvidenceFolder(tmp_path / "evidence")
    folder.root.mkdir(parents=True)
    folder.trust_root.write_bytes(world.root_bytes)
    tokens = folder.token_dir("tok-1")
    tokens.path.mkdir()
    tokens.token.write_bytes(token or world.token())
    tokens.manifest.write_bytes(manifest or sign_manifest(_manifest(world), DEVICE_KEY))
    identity = DeviceIdentity(device=DEVICE, public_key=DEVICE_KEY.public_key(), issued=NOW)
    tokens.device_identity.write_bytes(cert or sign_device_identity(identity, world.root_keys))
    for clip_id, data in CLIPS.items():
        tokens.clip(clip_id).write_bytes(data)
    return folder


def _rejects(folder: EvidenceFolder, *words: str) -> None:
    with pytest.raises(EvidenceProblem) as info:
        verify_folder(folder, at=NOW)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_a_genuine_folder_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world()
    folder = _folder(tmp_path, world)
    verdict = verify_folder(folder, at=NOW)
    assert [c.clip_id for c in verdict.tokens[0].clips] == list(CLIPS)
    assert verdict.root_fingerprint == hashlib.sha256(world.root_bytes).hexdigest()
    assert main(["verify", str(folder.root), "--at", "2026-06-01T12:00:00Z"]) == 0
    assert "verified: 2 clips under 1 token(s)" in capsys.readouterr().out
    assert main(["verify", str(folder.root), "--at", "2026-06-01T12:00:00Z", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_a_tampered_file_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, make_world())
    path = folder.token_dir("tok-1").clip("clip-b")
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    _rejects(folder, "clip-b.age", "the file was changed")
    assert main(["verify", str(folder.root), "--at", "2026-06-01T12:00:00Z"]) == 1
    assert "REJECTED" in capsys.readouterr().err


def test_a_missing_or_extra_clip_is_rejected(tmp_path: Path) -> None:
    folder = _folder(tmp_path, make_world())
    tokens = folder.token_dir("tok-1")
    (tokens.path / "planted.age").write_bytes(b"x")
    _rejects(folder, "planted.age", "does not list")
    (tokens.path / "planted.age").unlink()
    tokens.clip("clip-a").unlink()
    _rejects(folder, "clip-a.age", "missing")


def test_a_tampered_manifest_is_rejected(tmp_path: Path) -> None:
    world = make_world()
    signed = json.loads(sign_manifest(_manifest(world), DEVICE_KEY))
    forged = replace(_manifest(world), clips=_manifest(world).clips[:1])
    other = json.loads(sign_manifest(forged, OTHER_DEVICE_KEY))
    signed["payload"] = other["payload"]  # a shorter clip list under the genuine signature
    folder = _folder(tmp_path, world, manifest=json.dumps(signed).encode())
    _rejects(folder, "manifest.jws", "does not verify")


def test_a_manifest_signed_by_another_device_is_rejected(tmp_path: Path) -> None:
    world = make_world()
    folder = _folder(tmp_path, world, manifest=sign_manifest(_manifest(world), OTHER_DEVICE_KEY))
    _rejects(folder, "manifest.jws", "other than the device's identity")


def test_a_certificate_the_root_did_not_sign_is_rejected(tmp_path: Path) -> None:
    world = make_world()
    identity = DeviceIdentity(device=DEVICE, public_key=OTHER_DEVICE_KEY.public_key(), issued=NOW)
    forged = sign_device_identity(identity, world.release_keys)  # release keys, not root keys
    folder = _folder(tmp_path, world, cert=forged,
                     manifest=sign_manifest(_manifest(world), OTHER_DEVICE_KEY))
    _rejects(folder, "device-identity.json", "0 valid signature(s)")


def test_a_token_that_does_not_cover_the_clips_is_rejected(tmp_path: Path) -> None:
    world = make_world()
    elsewhere = Window(start=NOW - timedelta(hours=10), end=NOW - timedelta(hours=8))
    token = world.token(world.claims(window=elsewhere))
    _rejects(_folder(tmp_path / "a", world, token=token), "the token does not cover it")
    other = world.token(world.claims(jti="tok-2"))
    _rejects(_folder(tmp_path / "b", world, token=other), "made under token tok-1")


def test_a_token_for_another_device_or_unsigned_is_rejected(tmp_path: Path) -> None:
    world = make_world()
    token = world.token(world.claims(aud="another-door"))
    _rejects(_folder(tmp_path / "a", world, token=token), "token.jws", "wrong_device")
    half = sign_token(world.claims(), world.release_keys[:1])
    _rejects(_folder(tmp_path / "b", world, token=half), "token.jws", "below_threshold")


def test_the_agency_tool_imports_only_the_wire_contract() -> None:
    import ast

    import doorbell_evidence

    ours = {"device", "cloud_stub", "owner_app", "demo", "tests", "bench"}
    for path in Path(doorbell_evidence.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ours, f"{path.name} imports {name}"
