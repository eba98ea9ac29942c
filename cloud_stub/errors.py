"""The cloud stub's error hierarchy.

Two roots, as on the device and in python-tuf: `HostileInputError` for anything that came
from outside and cannot be trusted (HTTP bodies, MQTT payloads, uploaded files, device
signatures), and `EnvironmentFault` for the world failing under us (database, disk,
broker). The refusals the service decides on purpose (not found, forbidden, conflict)
hang directly under `CloudError`; every error has a stable machine-readable ``code``.
Third-party exceptions (SQLAlchemy, pyrage, paho) are translated at the seam that calls
the library.

`ConfigError`, `HostileInputError`, `EnvironmentFault` and `TransportError` are also the
shared classes of their names in `protocol.errors` (docs/architecture.md, "Errors"):
``except CloudError`` catches what the stub raises, an ``except`` of a shared class
catches that kind of failure from any program.
"""

from __future__ import annotations

from protocol import errors as shared


class CloudError(shared.SealedDoorbellError):
    """Base of every error the cloud stub raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(CloudError, shared.ConfigError):
    """The deployment directory or the service settings are missing or ill-formed."""

    code = "config_error"


class HostileInputError(CloudError, shared.HostileInputError):
    """Input from outside was rejected (bad body, bad signature, bad file). Never retried."""

    code = "bad_input"


class AuthenticationError(HostileInputError):
    """No credentials, or credentials that do not match a principal or an issued token."""

    code = "unauthenticated"


class NotFound(CloudError):
    """The named object does not exist, or the caller may not know that it does."""

    code = "not_found"


class Forbidden(CloudError):
    """The caller is authenticated but its role or organisation may not do this."""

    code = "forbidden"


class Conflict(CloudError):
    """The object is not in a state that allows the action (already decided, wrong offset)."""

    code = "conflict"


class TooLarge(HostileInputError):
    """A body, chunk or file is over its cap."""

    code = "too_large"


class RefusedByPolicy(CloudError):
    """The legal check refused it; ``code`` is the policy's own (docs/policy.md)."""

    code = "refused"


class SigningError(CloudError):
    """A token could not be built or signed (no escrowed keys, unreadable signer key)."""

    code = "signing_failed"


class EnvironmentFault(CloudError, shared.EnvironmentFault):
    """The world failed under us (database, disk, broker). May be retried."""

    code = "environment_fault"


class StoreError(EnvironmentFault):
    """The database refused or lost an operation."""

    code = "store_error"


class TransportError(EnvironmentFault, shared.TransportError):
    """The MQTT broker could not be reached or refused a publish."""

    code = "transport_error"
