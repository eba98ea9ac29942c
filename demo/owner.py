"""The owner's view: the retained release notice on the device's notice topic.

The owner's app holds an `owner` certificate in a real household; the demonstration
reads the same retained message with the cloud's certificate, which the ACL also lets
read notices (the owner identity is not provisioned by `cloud-stub init`).
"""

from __future__ import annotations

import contextlib
import json
import queue
import ssl
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from demo.steps import StepFailed
from protocol.bundle import DeploymentLayout
from protocol.topics import DEFAULT_PREFIX, DeviceTopics


def read_retained_notice(
    *, port: int, layout: DeploymentLayout, device_id: str, jti: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Subscribe to the notice topic and return the notice for `jti`.

    Raises StepFailed when no notice for that token arrives within `timeout`.
    """
    topic = DeviceTopics(device_id, DEFAULT_PREFIX).notice
    inbox: queue.Queue[bytes] = queue.Queue(maxsize=64)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"demo-owner-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(layout.ca_cert))
    context.load_cert_chain(str(layout.cloud_mqtt_cert), str(layout.cloud_mqtt_key))
    client.tls_set_context(context)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if not rc.is_failure:
            c.subscribe(topic, qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(queue.Full):  # the bounded inbox drops the excess
            inbox.put_nowait(bytes(message.payload))

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("localhost", port)
    client.loop_start()
    try:
        while True:
            try:
                payload = inbox.get(timeout=timeout)
            except queue.Empty:
                raise StepFailed(f"no owner notice for {jti} on {topic}") from None
            notice = json.loads(payload)
            if notice.get("jti") == jti:
                return {"topic": topic, **notice}
    finally:
        client.loop_stop()
        client.disconnect()
