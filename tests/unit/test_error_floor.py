"""The three programs share one error floor (`protocol.errors`, docs/architecture.md).

Each program's `ConfigError`, `HostileInputError`, `EnvironmentFault` and
`TransportError` is under its own root (so an ``except`` of that root keeps its meaning)
and under the shared class of its name (so an ``except`` of the shared class catches
that kind of failure from any program).
"""

from __future__ import annotations

import pytest

from cloud_stub import errors as cloud
from device import errors as device
from device.release import errors as device_release
from owner_app import errors as owner
from protocol import errors as shared

_KINDS = ("ConfigError", "HostileInputError", "EnvironmentFault", "TransportError")


@pytest.mark.parametrize(("program", "root"), [(device, device.DoorbellError),
                                               (cloud, cloud.CloudError)])
@pytest.mark.parametrize("kind", _KINDS)
def test_each_kind_is_under_its_program_root_and_the_shared_class(
    program: object, root: type[Exception], kind: str
) -> None:
    cls = getattr(program, kind)
    assert issubclass(cls, root)
    assert issubclass(cls, getattr(shared, kind))
    assert issubclass(cls, shared.SealedDoorbellError)


def test_the_owner_application_hangs_its_errors_on_the_floor() -> None:
    assert issubclass(owner.TransportError, owner.OwnerError)
    assert issubclass(owner.TransportError, shared.TransportError)
    assert issubclass(owner.BrokerUnreachable, shared.EnvironmentFault)
    assert issubclass(owner.BundleError, shared.ConfigError)
    assert issubclass(owner.StateError, shared.EnvironmentFault)
    # A refused payload is dropped and reported; it never ends a command.
    assert issubclass(owner.HostileInput, shared.HostileInputError)
    assert not issubclass(owner.HostileInput, owner.OwnerError)


def test_a_shared_except_catches_the_same_failure_from_every_program() -> None:
    raised = [device.TransportError("broker down"), device_release.UploadFailed("gave up"),
              cloud.TransportError("broker down"), owner.BrokerUnreachable("no answer")]
    for exc in raised:
        with pytest.raises(shared.TransportError):
            raise exc


def test_a_program_root_does_not_catch_another_program_or_the_protocol() -> None:
    assert not issubclass(cloud.TransportError, device.DoorbellError)
    assert not issubclass(device.TransportError, cloud.CloudError)
    assert not issubclass(shared.TokenRejected, device.DoorbellError)
    assert not issubclass(shared.TokenRejected, device.HostileInputError)
    assert issubclass(shared.TokenRejected, shared.HostileInputError)


def test_the_cloud_stub_keeps_its_codes_and_messages() -> None:
    exc = cloud.TransportError("broker refused the publish")
    assert exc.code == "transport_error"
    assert exc.message == "broker refused the publish"
    assert cloud.HostileInputError("x", code="bad_signature").code == "bad_signature"
    assert cloud.ConfigError("x").code == "config_error"
