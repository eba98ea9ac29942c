"""What enrolment writes of the release log (ADR 0014): the trust root's log policy and
the log's current cosigned checkpoint for the new doorbell's bundle (its first
checkpoint), and the policy and the device's tag for its owner's monitor. The service's
side of the log (logging tokens before they are published) is
`cloud_stub.services.release_log`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import httpx

from protocol.errors import ProtocolError
from protocol.keys import public_key_from_hex
from protocol.tlog.checkpoint import open_checkpoint
from protocol.tlog.errors import TlogError
from protocol.tlog.policy import parse_policy, witnessed_names
from protocol.tlog.statement import device_tag
from protocol.trust_root_v2 import TrustRootV2, load_any_trust_root
from release_log.client import LogClientError

OWNER_POLICY_FILE = "release-log/policy.txt"  # read by `doorbell-owner monitor`
OWNER_TAG_FILE = "release-log/device-tag"
DEVICE_CHECKPOINT_FILE = "release-log-checkpoint"  # the device bundle's first checkpoint


@dataclass(frozen=True)
class EnrolmentLog:
    """What enrolment writes when the deployment has a release log: the policy and the
    log's current cosigned checkpoint note (the doorbell's `LogGate.seed`)."""

    policy: str
    checkpoint: bytes

    def owner_files(self, identity_pub_hex: str) -> dict[str, bytes]:
        tag = device_tag(public_key_from_hex(identity_pub_hex))
        return {OWNER_POLICY_FILE: self.policy.encode("ascii"),
                OWNER_TAG_FILE: f"{tag}\n".encode("ascii")}


def enrolment_log(trust_root: bytes, *, now: datetime,
                  timeout_s: float = 10.0) -> EnrolmentLog | None:
    """None when `trust_root` (the one a new device gets) carries no log policy; else the
    policy and the log's current checkpoint, fetched from the policy's log URL and checked
    (log signature, witness quorum). Raises LogClientError naming what failed."""
    try:
        root = load_any_trust_root(trust_root, now=now)
    except ProtocolError as exc:
        raise LogClientError(f"the trust root: {exc}") from None
    if not isinstance(root, TrustRootV2) or root.log_policy is None:
        return None
    try:
        policy = parse_policy(root.log_policy.encode("ascii"))
    except TlogError as exc:
        raise LogClientError(f"the trust root's log policy: {exc}") from None
    logs = [log for log in policy.logs if log.url]
    if len(logs) != 1 or logs[0].url is None:
        raise LogClientError("the trust root's log policy must give one log line a URL")
    url = logs[0].url.rstrip("/") + "/checkpoint"
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise LogClientError(f"{url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise LogClientError(f"{url}: {response.status_code}")
    try:
        signed = open_checkpoint(response.content,
                                 [logs[0].verifier, *policy.witness_verifiers])
    except TlogError as exc:
        raise LogClientError(f"{url}: {exc}") from None
    names = witnessed_names(policy, (v for v, _ in signed.note.verified))
    if not signed.signed_by(logs[0].verifier) or not policy.satisfied(names):
        raise LogClientError(f"{url}: the checkpoint lacks the log's signature or the quorum")
    return EnrolmentLog(root.log_policy, response.content)
