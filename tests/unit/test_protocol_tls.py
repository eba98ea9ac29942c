"""`protocol.tls.client_context`: the one client TLS context of every MQTT client here.

Its settings are what the device, the cloud stub, the owner's CLI and the Home Assistant
bridge rely on; each refusal names the file and says whether the CA or the client pair
failed. A TLS handshake against a real server with and without the right CA and name
shows the checks act, not only that they are set.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest

from cloud_stub.provision.ca import CertificateAuthority
from protocol.tls import MINIMUM_VERSION, TlsMaterialError, client_context

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = CertificateAuthority.create(organization="test", now=NOW)
    other = CertificateAuthority.create(organization="other", now=NOW)
    server = ca.issue_server(hosts=["localhost"], now=NOW)
    client = ca.issue_client(common_name="porch", now=NOW)
    stranger = other.issue_client(common_name="porch", now=NOW)
    files = {
        "ca": (ca.cert_pem, 0o644), "other_ca": (other.cert_pem, 0o644),
        "server": (server.cert_pem, 0o644), "server_key": (server.key_pem, 0o600),
        "client": (client.cert_pem, 0o644), "client_key": (client.key_pem, 0o600),
        "stranger_key": (stranger.key_pem, 0o600), "garbage": (b"not a certificate\n", 0o644),
    }
    paths = {}
    for name, (data, mode) in files.items():
        path = tmp_path / f"{name}.pem"
        path.write_bytes(data)
        path.chmod(mode)
        paths[name] = path
    return paths


def test_the_context_requires_a_verified_chain_the_name_and_tls_1_2(pki: dict[str, Path]) -> None:
    context = client_context(pki["ca"], pki["client"], pki["client_key"])
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == MINIMUM_VERSION == ssl.TLSVersion.TLSv1_2
    no_client = client_context(pki["ca"])  # a broker that asks for no client certificate
    assert no_client.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("ca", "cert", "key", "which", "named"),
    [
        ("garbage", "client", "client_key", "ca", "garbage"),
        ("missing", "client", "client_key", "ca", "missing"),
        ("ca", "client", "stranger_key", "client", "stranger_key"),
        ("ca", "client", "garbage", "client", "garbage"),
    ],
)
def test_material_that_does_not_load_is_named(
    pki: dict[str, Path], tmp_path: Path, ca: str, cert: str, key: str, which: str, named: str,
) -> None:
    path = {**pki, "missing": tmp_path / "missing.pem"}
    with pytest.raises(TlsMaterialError) as caught:
        client_context(path[ca], path[cert], path[key])
    assert caught.value.which == which
    assert f"{named}.pem" in str(caught.value)


def test_a_certificate_without_its_key_is_refused(pki: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="both or neither"):
        client_context(pki["ca"], pki["client"], None)


def _serve_once(pki: dict[str, Path]) -> tuple[int, threading.Thread]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(pki["server"]), str(pki["server_key"]))
    listener = socket.create_server(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]

    def accept() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize(
    ("ca", "name", "error"),
    [
        ("ca", "localhost", None),  # the control: the right CA and the certificate's name
        ("other_ca", "localhost", "certificate verify failed"),
        ("ca", "127.0.0.1", "IP address mismatch"),
    ],
)
def test_the_checks_act_in_a_real_handshake(
    pki: dict[str, Path], ca: str, name: str, error: str | None,
) -> None:
    port, thread = _serve_once(pki)
    context = client_context(pki[ca])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if error is None:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match=error):
                context.wrap_socket(raw, server_hostname=name)
    thread.join(timeout=10)
