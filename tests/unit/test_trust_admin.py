"""Preparing and signing trust root v2 on the operator's side, the keys `serve` refuses
to run beside, and the reviewer's key file (docs/adr/0013-trust-root-v2.md)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.errors import ConfigError
from cloud_stub.provision.offline import readable_decisive_keys
from cloud_stub.provision.trust_roots import (
    add_court,
    add_reviewer,
    load_draft,
    published_chain,
    remove_reviewer,
    save_draft,
    sign_draft,
)
from doorbell_review.checks import check_payload
from doorbell_review.keys import ReviewKeyError, generate, load
from protocol.keys import key_id, public_key_hex
from protocol.release_signing import SignatureRefused, describe, payload_segment, payload_sha256
from protocol.trust_root_v2 import TrustRootV2, load_any_trust_root
from tests.fixtures.deployment import TestDeployment
from tests.vectors import generate_v2 as g


def _hex() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, public_key_hex(key)


def test_the_first_v2_draft_keeps_root_and_policy_and_drops_the_v1_review_key(
    fresh_deployment: TestDeployment,
) -> None:
    layout = fresh_deployment.layout
    now = datetime.now(UTC)
    current = load_any_trust_root(layout.trust_root.read_bytes(), now=now)
    draft = load_draft(layout, now)
    assert draft.version == current.version + 1
    assert draft.root_role == current.root_role
    review_pub = layout.signer_key("review").with_suffix(".pub").read_text().strip()
    assert all(public_key_hex(k) != review_pub for k in draft.keys.values())
    assert "demo-district-court" in draft.courts
    assert draft.reviewers == {}


def test_add_remove_sign_and_publish(fresh_deployment: TestDeployment) -> None:
    layout = fresh_deployment.layout
    now = datetime.now(UTC)
    _, alice = _hex()
    _, court = _hex()
    draft = add_court(add_reviewer(load_draft(layout, now), "alice", "acme", alice),
                      "district-7", "District Court 7", court)
    save_draft(layout, draft)
    root = sign_draft(layout, layout.offline_root_dir, now)
    assert isinstance(root, TrustRootV2)
    assert [r.name for r in root.reviewers.values()] == ["alice"]
    registry = json.loads(layout.court_registry.read_text())
    assert registry["courts"]["district-7"]["public_key"] == court
    assert not layout.trust_root_draft.exists()
    assert len(published_chain(layout)) == 1

    save_draft(layout, remove_reviewer(load_draft(layout, now), "alice"))
    third = sign_draft(layout, layout.offline_root_dir, now)
    assert third.version == root.version + 1
    assert isinstance(third, TrustRootV2)
    assert third.reviewers == {}
    assert len(published_chain(layout)) == 2
    with pytest.raises(ConfigError, match="no key in the draft"):
        remove_reviewer(load_draft(layout, now), "alice")


def test_a_draft_signed_without_the_root_keys_is_refused_by_the_device_rule(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    layout = fresh_deployment.layout
    now = datetime.now(UTC)
    stranger = tmp_path / "keys"
    stranger.mkdir()
    from protocol.keys import private_key_to_pem

    (stranger / "root-1.key").write_bytes(private_key_to_pem(Ed25519PrivateKey.generate()))
    with pytest.raises(ConfigError, match="no key there is a root key"):
        sign_draft(layout, stranger, now)
    before = layout.trust_root.read_bytes()
    (stranger / "root-2.key").write_bytes(layout.root_key("root-1").read_bytes())
    with pytest.raises(ConfigError, match="a device would refuse this root"):
        sign_draft(layout, stranger, now)
    assert layout.trust_root.read_bytes() == before


def test_a_key_with_another_role_cannot_become_a_reviewer(
    fresh_deployment: TestDeployment,
) -> None:
    layout = fresh_deployment.layout
    draft = load_draft(layout, datetime.now(UTC))
    policy_pub = layout.signer_key("policy").with_suffix(".pub").read_text().strip()
    with pytest.raises(ConfigError, match="another role"):
        add_reviewer(draft, "host", "host-org", policy_pub)


def test_serve_would_name_every_decisive_key_it_can_read(
    fresh_deployment: TestDeployment,
) -> None:
    layout = fresh_deployment.layout
    named = {path for path, _ in readable_decisive_keys(layout)}
    assert layout.root_key("root-1") in named
    assert layout.court_key("demo-district-court") in named
    assert layout.test_reviewer_key("test-alice") in named
    assert layout.signer_key("policy") not in named
    fresh_deployment.move_keys_off_host()
    assert readable_decisive_keys(layout) == []


def test_the_reviewer_key_is_private_from_its_creation_and_never_overwritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cfg" / "doorbell-review" / "reviewer.key"
    key = generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id(load(path).public_key()) == key_id(key.public_key())
    with pytest.raises(ReviewKeyError, match="refusing to overwrite"):
        generate(path)
    path.chmod(0o644)
    with pytest.raises(ReviewKeyError, match="readable by others"):
        load(path)


def test_the_reviewer_refuses_a_payload_that_is_not_the_request_shown() -> None:
    claims = g.warrant()
    segment = payload_segment(claims)
    request = {"id": claims.case.request_id, "basis": "warrant", "devices": [claims.aud],
               "window": {"start": claims.window.start.isoformat(),
                          "end": claims.window.end.isoformat()}}
    entry: dict[str, Any] = {"device": claims.aud, "payload": segment,
                             "payload_sha256": payload_sha256(segment),
                             "summary": describe(claims)}
    assert check_payload(request, entry).jti == claims.jti
    for changed, match in (
        ({**request, "id": "another"}, "for request"),
        ({**request, "devices": ["garage"]}, "for device"),
        ({**request, "window": {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}},
         "window"),
    ):
        with pytest.raises(SignatureRefused, match=match):
            check_payload(changed, entry)
    with pytest.raises(SignatureRefused, match="summary"):
        check_payload(request, {**entry, "summary": {**entry["summary"], "device": "x"}})


def test_the_release_log_witness_policy_goes_into_the_draft(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    from cloud_stub.cli import main

    layout = fresh_deployment.layout
    policy = tmp_path / "witness-policy"
    policy.write_text("log doorbell-log 0123\nwitness w1 4567\nquorum w1\n", encoding="ascii")
    assert main(["root", "log-policy", str(policy), "--deployment", str(layout.root)]) == 0
    assert load_draft(layout, datetime.now(UTC)).log_policy == policy.read_text()
    policy.write_text("log \u00e9\n", encoding="utf-8")
    assert main(["root", "log-policy", str(policy), "--deployment", str(layout.root)]) == 1
    assert main(["root", "log-policy", "--clear", "--deployment", str(layout.root)]) == 0
    assert load_draft(layout, datetime.now(UTC)).log_policy is None
