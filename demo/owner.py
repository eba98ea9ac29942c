"""The owner's view: the retained release notice on the device's notice topic.

The owner's application holds the owner bundle `cloud-stub devices enroll` wrote for the
device (`protocol.bundle.OwnerBundleLayout`): a certificate with CN ``owner.<id>`` that
the broker's ACL lets read that device's notice and status and nothing else, and an
``owner.toml`` naming the broker and the topics. The demonstration reads the notice
exactly so.
"""

from __future__ import annotations

import contextlib
import json
import queue
import ssl
import tomllib
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from demo.steps import StepFailed
from protocol.bundle import OwnerBundleLayout


@dataclass(frozen=True, slots=True)
class OwnerSettings:
    """What an owner bundle's owner.toml says: where the broker is, what to read."""

    host: str
    port: int
    notice: str
    status: str


def load_owner_settings(owner: OwnerBundleLayout) -> OwnerSettings:
    """Read the bundle's owner.toml. Raises StepFailed naming the file when it is not one."""
    try:
        document = tomllib.loads(owner.config.read_text(encoding="utf-8"))
        return OwnerSettings(
            host=str(document["broker"]["host"]),
            port=int(document["broker"]["port"]),
            notice=str(document["topics"]["notice"]),
            status=str(document["topics"]["status"]),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StepFailed(f"{owner.config}: not an owner bundle's owner.toml ({exc})") from exc


def read_retained_notice(
    *, owner: OwnerBundleLayout, jti: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Connect with the owner bundle, subscribe to its notice topic, and return the notice
    for `jti`.

    Raises StepFailed when no notice for that token arrives within `timeout`.
    """
    settings = load_owner_settings(owner)
    topic = settings.notice
    inbox: queue.Queue[bytes] = queue.Queue(maxsize=64)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"demo-owner-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(owner.ca_cert))
    context.load_cert_chain(str(owner.mqtt_cert), str(owner.mqtt_key))
    client.tls_set_context(context)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            c.subscribe(topic, qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(queue.Full):  # the bounded inbox drops the excess
            inbox.put_nowait(bytes(message.payload))

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(settings.host, settings.port)
    client.loop_start()
    try:
        while True:
            try:
                payload = inbox.get(timeout=timeout)
            except queue.Empty:
                raise StepFailed(
                    f"no owner notice for {jti} on {topic} (as {owner.root.name}'s owner)"
                ) from None
            notice = json.loads(payload)
            if notice.get("jti") == jti:
                return {"topic": topic, **notice}
    finally:
        client.loop_stop()
        client.disconnect()
