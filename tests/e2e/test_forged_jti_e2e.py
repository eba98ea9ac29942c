"""End to end: a forged token that claims the jti of a release in flight cannot stop that
release (docs/protocol.md, "Which token a result is about").

The real cloud stub (HTTP and MQTT), a real mosquitto with the deployment's config and
ACL, and the device's real release service with a sealed store. A warrant is approved
while the device is offline, so its token waits in the device's broker session; behind
it on the same topic comes a forgery: the same bytes with one signature altered, so it
claims the real jti. The device accepts the real token and refuses the forgery
``bad_signature`` before its signatures verified, so it reports that refusal under the
forged bytes' own id, naming their sha256; the cloud finds no token issued with those
bytes and believes nothing. The real token is never marked rejected and its upload
completes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cloud_stub.store.models import AuditRow, CustodyRecord
from protocol.topics import DeviceTopics
from tests.e2e.test_token_redelivery_e2e import _device_audit, scene
from tests.fixtures.broker import publish
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def forge(jws: str) -> bytes:
    """The token with one byte of its first signature changed (still base64url, 64 bytes)."""
    envelope: dict[str, Any] = json.loads(jws)
    signature = envelope["signatures"][0]["signature"]
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    envelope["signatures"][0]["signature"] = (
        base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode())
    return json.dumps(envelope).encode()


def test_a_forgery_claiming_a_jti_in_flight_does_not_stop_the_release(tmp_path: Path) -> None:
    with scene(tmp_path, initial_s=3600, max_s=3600) as s:
        jti = s.approve()
        wait_until("the broker's acknowledgement", lambda: s.status(jti) == "published")
        forged = forge(s.token(jti).jws)
        topics = DeviceTopics(s.rig.device_id, s.cloud.deployment.prefix)
        attacker = s.broker.client("cloud")  # whoever can publish on the release topic
        try:
            publish(attacker, topics.release, forged, qos=1)
        finally:
            attacker.disconnect()
        service = s.device_service()
        service.start()
        try:
            wait_until("the release to complete", lambda: s.status(jti) == "uploaded", timeout=90)
        finally:
            service.stop()

        with s.cloud.service.store.read() as session:
            actions = [str(a) for a in session.execute(
                select(AuditRow.action).where(AuditRow.subject == f"token:{jti}")
                .order_by(AuditRow.seq)).scalars()]
            custody = session.execute(
                select(CustodyRecord.clip_id).where(CustodyRecord.jti == jti)).scalars().all()
        assert "token.rejected" not in actions
        assert "token.uploaded" in actions
        assert list(custody) == [s.clip_id]
        forged_sha = hashlib.sha256(forged).hexdigest()
        decisions = [e["data"] for e in _device_audit(s.rig) if e["event"] == "decision"]
        refused = [d for d in decisions if d["sha256"] == forged_sha]
        assert [(d["status"], d["code"], d["jti"]) for d in refused] == [
            ("rejected", "bad_signature", f"sha256-{forged_sha[:32]}")]
