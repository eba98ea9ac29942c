"""The agent's error hierarchy.

Two roots, in the manner of python-tuf: `HostileInputError` for bytes that came from
outside and cannot be trusted (tokens, MQTT payloads, files on the card), and
`EnvironmentFault` for the world failing under us (broker down, disk full, camera gone).
Third-party exceptions are translated into these at the seam that calls the library.
"""

from __future__ import annotations


class DoorbellError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(DoorbellError):
    """The configuration file is missing, unreadable, or names an unknown or ill-typed key."""


class HostileInputError(DoorbellError):
    """Input from outside the device was rejected. Never retried as is."""


class EnvironmentFault(DoorbellError):
    """The world failed under us (disk, broker, camera, network). May be retried."""


class StorageFull(EnvironmentFault):
    """No space can be freed: the agent stops opening clips until space returns."""


class CameraError(EnvironmentFault):
    """The camera could not be opened or stopped delivering frames."""


class TransportError(EnvironmentFault):
    """The broker or the cloud could not be reached."""
