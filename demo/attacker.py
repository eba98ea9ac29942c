"""The demo's attacker: someone holding every file of the cloud host.

With the host's copy of the deployment (the policy key, v1's review key, the escrow key,
the database, the cloud's MQTT certificate and key) the attacker forges a warrant token
(for a window of its choosing, carrying the court's genuine statement from an earlier
request) and an emergency token, and publishes both on the doorbell's release topic
with the cloud's own broker credentials. The doorbell refuses both before it reads
their signatures: they carry no proof from the public release log, and the attacker
cannot make the log's witnesses cosign an entry they never saw (`not_logged`,
docs/adr/0014-release-log.md). Under trust root v2 they would fall next: no reviewer
signed them (docs/adr/0013-trust-root-v2.md, docs/threat-model.md).
"""

from __future__ import annotations

import hashlib
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from demo.steps import StepFailed
from device.release.messages import unverified_id
from protocol.bundle import DeploymentLayout
from protocol.keys import private_key_from_pem
from protocol.token import CaseRef, ReleaseClaims, Window, seal_keys_for_device, sign_token
from protocol.topics import DeviceTopics
from protocol.warrant import WarrantClaim


@dataclass(frozen=True, slots=True)
class Forgery:
    basis: str
    jti: str
    token: bytes

    @property
    def bytes_id(self) -> str:
        """The id the doorbell judges an unproven token under: its bytes' own
        (`device.release.messages.unverified_id`), never the jti it claims."""
        return unverified_id(hashlib.sha256(self.token).hexdigest())


def _claims(layout: DeploymentLayout, device_id: str, issuer: str, basis: str,
            window: Window, now: datetime, warrant: WarrantClaim | None, recipient: str
            ) -> ReleaseClaims:
    transport = (layout.device_record(device_id) / "transport.pub").read_text().strip()
    jti = f"forged-{basis}-{uuid.uuid4().hex[:8]}"
    iat = int(now.timestamp())
    case = (CaseRef("forged", warrant.statement.docket, warrant.statement.court_id,
                    warrant.statement.document_sha256) if warrant is not None
            else CaseRef("forged", "INC-FORGED", "host", "00" * 32))
    return ReleaseClaims(
        v=1, iss=issuer, aud=device_id, jti=jti, seq=int(time.time() * 1000), iat=iat,
        nbf=iat, exp=iat + 1800, basis=basis, case=case, window=window,
        recipient=recipient,
        keys=seal_keys_for_device({}, transport),
        upload=f"http://127.0.0.1:9/v1/evidence/{jti}", warrant=warrant,
    )


def genuine_token_from_database(layout: DeploymentLayout, device_id: str) -> ReleaseClaims:
    """The claims of the last token the service issued for the device, read straight from
    the host's SQLite store."""
    import sqlite3

    path = layout.cloud_dir / "store.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT jws FROM tokens WHERE device_id = ? AND basis = 'warrant' "
                         "ORDER BY seq DESC LIMIT 1", (device_id,)).fetchone()
    if row is None:
        raise StepFailed("the attacker found no warrant token in the database")
    return ReleaseClaims.from_payload(json.loads(_b64url(json.loads(row[0])["payload"])))


def forge(layout: DeploymentLayout, device_id: str, genuine: ReleaseClaims, now: datetime
          ) -> list[Forgery]:
    """A warrant and an emergency token, each signed with every release key on the host."""
    keys = [private_key_from_pem(layout.signer_key(name).read_bytes())
            for name in ("policy", "review") if layout.signer_key(name).exists()]
    issuer = genuine.iss
    window = Window(now - timedelta(days=2), now - timedelta(minutes=1))  # a wider window
    out = []
    for basis, warrant in (("warrant", genuine.warrant), ("emergency", None)):
        claims = _claims(layout, device_id, issuer, basis,
                         window if basis == "warrant" else
                         Window(now - timedelta(hours=6), now - timedelta(minutes=1)),
                         now, warrant, genuine.recipient or "")
        out.append(Forgery(basis, claims.jti, sign_token(claims, keys)))
    return out


def _b64url(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def publish_as_cloud(layout: DeploymentLayout, port: int, prefix: str, device_id: str,
                     tokens: list[bytes]) -> None:
    """Publish on the device's release topic with the cloud's own certificate."""
    context = ssl.create_default_context(cafile=str(layout.ca_cert))
    context.load_cert_chain(str(layout.cloud_mqtt_cert), str(layout.cloud_mqtt_key))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{uuid.uuid4().hex[:8]}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set_context(context)
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        topic = DeviceTopics(device_id, prefix).release
        for token in tokens:
            info = client.publish(topic, token, qos=1)
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                raise StepFailed("the broker did not take the forged token")
    except OSError as exc:
        raise StepFailed(f"the attacker could not reach the broker: {exc}") from exc
    finally:
        client.loop_stop()
        client.disconnect()


def device_decisions(state_dir: Path, jtis: set[str]) -> dict[str, dict[str, Any]]:
    """The device's audit decisions for `jtis` (jti -> decision data)."""
    out: dict[str, dict[str, Any]] = {}
    path = state_dir / "release" / "audit.jsonl"
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        data = record.get("data", {})
        if record.get("event") == "decision" and data.get("jti") in jtis:
            out[data["jti"]] = data
    return out


def uploads_for(state_dir: Path, jtis: set[str]) -> int:
    path = state_dir / "release" / "audit.jsonl"
    count = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") in ("uploaded", "resealed") and \
                record.get("data", {}).get("jti") in jtis:
            count += 1
    return count
