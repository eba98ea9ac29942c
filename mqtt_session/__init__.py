"""One MQTT session helper for the device's link, the cloud's link, the owner's link and
the Home Assistant bridge (docs/architecture.md, "One MQTT session").

It sits on the floor beside `protocol`: it imports paho, the standard library and
`protocol`, never a program.
"""

from mqtt_session.inbound import Inbound, InboundQueue
from mqtt_session.session import Delivery, ErrorFactory, Session, SessionSettings, Will
from mqtt_session.watcher import ProblemLog, Watcher

__all__ = [
    "Delivery",
    "ErrorFactory",
    "Inbound",
    "InboundQueue",
    "ProblemLog",
    "Session",
    "SessionSettings",
    "Watcher",
    "Will",
]
