"""The owner's view: the retained release notice on the device's notice topic.

The owner's application holds the owner bundle `cloud-stub devices enroll` wrote for the
device (`protocol.bundle.OwnerBundleLayout`): a certificate with CN ``owner.<id>`` that
the broker's ACL lets read that device's notice and status and nothing else, and an
``owner.toml`` naming the broker and the topics. The demonstration reads the notice
with `doorbell-owner`'s own code (`owner_app`): the bundle checked, TLS against the
bundle's CA, the notice parsed by the protocol. It reads once, without the persistent
session and ledger of `doorbell-owner notices`, since the demo's broker lives no
longer than the demo.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from demo.steps import StepFailed
from owner_app.bundle import load_bundle
from owner_app.errors import HostileInput, OwnerError
from owner_app.link import LinkSettings, OwnerLink
from owner_app.reader import judge
from protocol.bundle import OwnerBundleLayout


def read_retained_notice(
    *, owner: OwnerBundleLayout, jti: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Connect with the owner bundle, subscribe to its notice topic, and return the notice
    for `jti` (its members and the topic).

    Raises StepFailed when the bundle or the broker fails, when a payload on the topic
    is not a valid notice, or when no notice for that token arrives within `timeout`.
    """
    try:
        bundle = load_bundle(owner.root)
        topic = bundle.topics.notice
        link = OwnerLink(LinkSettings(
            host=bundle.host, port=bundle.port,
            client_id=f"{bundle.user}.demo-{uuid.uuid4().hex[:8]}", tls=bundle.tls_context(),
            persistent=False, session_expiry_s=0,
        ))
        link.open()
    except OwnerError as exc:
        raise StepFailed(f"reading the owner notice: {exc}") from exc
    deadline = time.monotonic() + timeout
    try:
        link.subscribe(topic, timeout)
        while (message := link.receive(max(0.0, deadline - time.monotonic()))) is not None:
            link.ack(message)
            try:
                notice = judge(message.topic, message.payload, expected_topic=topic)
            except HostileInput as exc:
                raise StepFailed(f"the payload on {topic} is not a notice: {exc}") from None
            if notice.jti == jti:
                return {"topic": topic, **json.loads(notice.to_bytes())}
    except OwnerError as exc:
        raise StepFailed(f"reading the owner notice: {exc}") from exc
    finally:
        link.close()
    raise StepFailed(f"no owner notice for {jti} on {topic} (as {owner.root.name}'s owner)")


def read_retained_status(
    *, owner: OwnerBundleLayout, accept: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0
) -> dict[str, Any]:
    """Subscribe to the device's status topic with the owner bundle and return the first
    status body (its health flattened, as the device publishes it) that `accept`s.

    Raises StepFailed when the bundle or the broker fails, or when no accepted status
    arrives within `timeout`.
    """
    try:
        bundle = load_bundle(owner.root)
        topic = bundle.topics.status
        link = OwnerLink(LinkSettings(
            host=bundle.host, port=bundle.port,
            client_id=f"{bundle.user}.demo-{uuid.uuid4().hex[:8]}", tls=bundle.tls_context(),
            persistent=False, session_expiry_s=0,
        ))
        link.open()
    except OwnerError as exc:
        raise StepFailed(f"reading the device's status: {exc}") from exc
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    try:
        link.subscribe(topic, timeout)
        while (message := link.receive(max(0.0, deadline - time.monotonic()))) is not None:
            link.ack(message)
            try:
                body = json.loads(message.payload)
            except ValueError:
                raise StepFailed(f"the payload on {topic} is not JSON") from None
            if isinstance(body, dict):
                seen = {**body, **(body.get("health") or {})}
                if accept(seen):
                    return seen
    except OwnerError as exc:
        raise StepFailed(f"reading the device's status: {exc}") from exc
    finally:
        link.close()
    raise StepFailed(f"no matching status on {topic} within {timeout:.0f} s (last: {seen})")
