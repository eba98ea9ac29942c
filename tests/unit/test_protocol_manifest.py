"""Evidence manifests: signed by the device identity, parsed strictly, checked against
the token's window."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from protocol._jws import b64url_decode, b64url_encode
from protocol.errors import ManifestError
from protocol.keys import key_id
from protocol.manifest import (
    MAX_MANIFEST_BYTES,
    EvidenceManifest,
    ManifestClip,
    check_manifest_window,
    sign_manifest,
    verify_manifest,
)
from protocol.token import Window, sign_token
from tests.unit.protocol_world import NOW, make_world, seeded_key

DEVICE_KEY = seeded_key("device-identity")
WINDOW = Window(start=NOW - timedelta(hours=3), end=NOW - timedelta(hours=1))


def clip(clip_id: str, start_h: float, end_h: float) -> ManifestClip:
    return ManifestClip(
        clip_id=clip_id,
        start=NOW - timedelta(hours=start_h),
        end=NOW - timedelta(hours=end_h),
        bytes=1234,
        sha256="cd" * 32,
    )


MANIFEST = EvidenceManifest(
    jti="tok-1", device="porch-1", created=NOW, clips=(clip("c1", 2.5, 2.4), clip("c2", 1.1, 0.9))
)


def test_round_trip() -> None:
    data = sign_manifest(MANIFEST, DEVICE_KEY)
    assert verify_manifest(data, DEVICE_KEY.public_key()) == MANIFEST
    header = json.loads(b64url_decode(json.loads(data)["signatures"][0]["protected"]))
    assert header == {
        "alg": "Ed25519",
        "kid": key_id(DEVICE_KEY.public_key()),
        "typ": "doorbell-manifest+jws",
    }


def test_other_device_key_is_refused() -> None:
    data = sign_manifest(MANIFEST, seeded_key("another-device"))
    with pytest.raises(ManifestError, match="other than the device"):
        verify_manifest(data, DEVICE_KEY.public_key())


def test_edited_manifest_fails_signature() -> None:
    doc = json.loads(sign_manifest(MANIFEST, DEVICE_KEY))
    payload = MANIFEST.to_payload()
    payload["clips"][0]["sha256"] = "00" * 32  # an attacker swaps in other bytes
    doc["payload"] = b64url_encode(json.dumps(payload).encode())
    with pytest.raises(ManifestError, match="does not verify"):
        verify_manifest(json.dumps(doc).encode(), DEVICE_KEY.public_key())


def test_a_release_token_is_not_a_manifest() -> None:
    world = make_world()
    with pytest.raises(ManifestError, match="bad_header"):
        verify_manifest(world.token(), world.release_keys[0].public_key())
    token = sign_token(world.claims(), [DEVICE_KEY])
    with pytest.raises(ManifestError, match="typ"):
        verify_manifest(token, DEVICE_KEY.public_key())


def test_second_signature_is_refused() -> None:
    doc = json.loads(sign_manifest(MANIFEST, DEVICE_KEY))
    doc["signatures"].append(doc["signatures"][0])
    with pytest.raises(ManifestError, match="exactly one"):
        verify_manifest(json.dumps(doc).encode(), DEVICE_KEY.public_key())


@pytest.mark.parametrize("data", [b"", b"{}", b"[1]", b" " * (MAX_MANIFEST_BYTES + 1)])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ManifestError):
        verify_manifest(data, DEVICE_KEY.public_key())


def test_sign_refuses_manifests_the_cloud_would_refuse() -> None:
    dup = EvidenceManifest(
        jti="tok-1", device="porch-1", created=NOW, clips=(clip("c1", 2, 1), clip("c1", 2, 1))
    )
    with pytest.raises(ValueError, match="twice"):
        sign_manifest(dup, DEVICE_KEY)
    backwards = EvidenceManifest(
        jti="tok-1", device="porch-1", created=NOW, clips=(clip("c1", 1, 2),)
    )
    with pytest.raises(ValueError, match="ends before"):
        sign_manifest(backwards, DEVICE_KEY)
    with pytest.raises(ValueError, match="clip_id"):
        sign_manifest(
            EvidenceManifest(
                jti="tok-1", device="porch-1", created=NOW, clips=(clip("../x", 2, 1),)
            ),
            DEVICE_KEY,
        )


def test_window_check() -> None:
    check_manifest_window(MANIFEST, WINDOW)
    # A clip that straddles the window's start overlaps it and may be released.
    check_manifest_window(
        EvidenceManifest(jti="t", device="d", created=NOW, clips=(clip("edge", 3.2, 2.9),)), WINDOW
    )
    outside = EvidenceManifest(
        jti="t", device="d", created=NOW, clips=(clip("c1", 2, 1.5), clip("late", 0.9, 0.5))
    )
    with pytest.raises(ManifestError, match="late"):
        check_manifest_window(outside, WINDOW)
    # A clip ending exactly at the window's start does not overlap the half-open window.
    touching = EvidenceManifest(jti="t", device="d", created=NOW, clips=(clip("t", 4, 3),))
    with pytest.raises(ManifestError, match="outside"):
        check_manifest_window(touching, WINDOW)
