"""Errors of provisioning (`cloud-stub init`, `cloud-stub devices enroll`).

`ProvisionError` is the root; every message names the file, the id or the option at
fault. `InvalidName` and `AlreadyExists` are refusals of the operator's input that leave
the disk untouched; `DeploymentError` means the deployment directory is missing, partial
or unreadable; `WriteError` wraps an `OSError` from writing a file (disk full, permission).
"""

from __future__ import annotations

from cloud_stub.errors import CloudError


class ProvisionError(CloudError):
    """Base of every error provisioning raises on purpose."""

    code = "provision_error"


class InvalidName(ProvisionError):
    """A device id, cloud id, prefix, host, URL or recipient given by the operator is unsafe."""

    code = "invalid_name"


class AlreadyExists(ProvisionError):
    """The deployment, device or output path exists already; nothing was overwritten."""

    code = "already_exists"


class DeploymentError(ProvisionError):
    """The deployment directory is missing, incomplete or holds a file that cannot be read."""

    code = "deployment_error"


class WriteError(ProvisionError):
    """A file could not be written (the underlying OSError is chained)."""

    code = "write_error"


class NotEnrolled(ProvisionError):
    """The device id names no enrolled device (or lacks the certificate asked for)."""

    code = "not_enrolled"


class DeviceRevoked(ProvisionError):
    """The device is revoked (``devices revoke`` of scope device): nothing is issued to it."""

    code = "device_revoked"
