"""The client TLS context of every MQTT client in this repository.

The device's link to the cloud's broker, the cloud stub's own link, the owner's
`doorbell-owner` and the Home Assistant bridge all connect the same way: TLS 1.2 or
later, the broker's certificate chain verified against a named CA (or the system's
trust store), the broker's name checked against the host connected to, and a client
certificate when the broker asks for one. One function builds that context so that no
client can drift from it; there is deliberately no switch that loosens it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


class TlsMaterialError(ValueError):
    """A CA file or a client certificate and key did not load. `which` says which: the
    caller names its own setting for it."""

    def __init__(self, which: Literal["ca", "client"], path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.which = which
        self.path = path
        self.reason = reason


def client_context(
    ca_file: Path | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext:
    """A client context: TLS 1.2 or later, certificates required and the host name
    checked, trusting `ca_file` only (the system trust store when None), presenting
    `client_cert` with `client_key` when given (both or neither).

    Raises TlsMaterialError naming the file that did not load, and ValueError when only
    one of `client_cert` and `client_key` is given.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("a client certificate and its key go together: give both or neither")
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise TlsMaterialError("ca", ca_file or Path("(system trust store)"),
                               f"not a usable CA certificate ({exc})") from None
    context.minimum_version = MINIMUM_VERSION
    # create_default_context sets both already; stated so no later edit loosens them.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if client_cert is not None and client_key is not None:
        try:
            context.load_cert_chain(str(client_cert), str(client_key))
        except (OSError, ssl.SSLError) as exc:
            raise TlsMaterialError(
                "client", client_key,
                f"does not load with {client_cert}: not the private key of that "
                f"certificate, or unreadable ({exc})",
            ) from None
    return context
