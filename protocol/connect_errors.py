"""A failed connection to the broker, in words: the one wording both MQTT clients (the
agent's and the cloud's) log and report, naming the kind of failure and the system's
message (docs/states-and-codes.md lists where it shows)."""

from __future__ import annotations

import socket
import ssl


def describe_connection_error(exc: BaseException) -> str:
    """E.g. "connection refused (no broker listens on that port)"."""
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no broker listens on that port)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
