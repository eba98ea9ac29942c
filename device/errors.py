"""The agent's error hierarchy.

Two roots, in the manner of python-tuf: `HostileInputError` for bytes that came from
outside and cannot be trusted (tokens, MQTT payloads, files on the card), and
`EnvironmentFault` for the world failing under us (broker down, disk full, camera gone).
Third-party exceptions are translated into these at the seam that calls the library.

Each class here is also the shared class of its name in `protocol.errors` (the floor
every program builds on; docs/architecture.md, "Errors"): ``except DoorbellError``
catches what the agent raises, ``except protocol.errors.TransportError`` catches a
transport failure from any program.
"""

from __future__ import annotations

from protocol import errors as shared


class DoorbellError(shared.SealedDoorbellError):
    """Base of every error the agent raises on purpose."""


class ConfigError(DoorbellError, shared.ConfigError):
    """The configuration file is missing, unreadable, or names an unknown or ill-typed key."""


class HostileInputError(DoorbellError, shared.HostileInputError):
    """Input from outside the device was rejected. Never retried as is."""


class EnvironmentFault(DoorbellError, shared.EnvironmentFault):
    """The world failed under us (disk, broker, camera, network). May be retried."""


class StorageFull(EnvironmentFault):
    """No space can be freed: the agent stops opening clips until space returns."""


class CameraError(EnvironmentFault):
    """The camera could not be opened or stopped delivering frames."""


class TransportError(EnvironmentFault, shared.TransportError):
    """The broker or the cloud could not be reached."""
