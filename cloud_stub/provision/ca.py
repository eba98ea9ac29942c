"""The deployment's X.509 certificate authority for MQTT over TLS.

Keys are ECDSA P-256: every TLS stack a deployment meets (OpenSSL 3 under mosquitto and
Python on Debian 12 and Raspberry Pi OS, Java under HiveMQ, Erlang under EMQX/VerneMQ)
handles it, which is not yet true of Ed25519 certificates. Signatures are ECDSA with
SHA-256. The CA may sign end-entity certificates only (path length 0). Every certificate
carries subject and authority key identifiers and critical key usage, so strict verifiers
(Python 3.13's ``VERIFY_X509_STRICT``) accept the chain.

Raises `DeploymentError` when the CA's files cannot be read back.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_stub.provision.errors import DeploymentError

CA_VALIDITY = dt.timedelta(days=3650)  # the deployment's lifetime; re-keying re-enrols all
SERVER_VALIDITY = dt.timedelta(days=825)  # the CA/B ceiling habit for server certificates
CLIENT_VALIDITY = dt.timedelta(days=1825)  # a doorbell's service life between re-enrolments
BACKDATE = dt.timedelta(minutes=5)  # tolerate a verifier whose clock is slightly behind
CLIENT_URN_PREFIX = "urn:sealed-doorbell:mqtt-client:"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A certificate and its private key, ready to be written (key 0600, cert 0644)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _pem_key(self.key)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True, slots=True)
class CertificateAuthority(IssuedCert):
    """The CA certificate and key (`cert_pem`, `key_pem` as any issued pair). `issue_*`
    return fresh key pairs with certificates."""

    @classmethod
    def create(cls, *, organization: str, now: dt.datetime) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"{organization} MQTT CA", organization)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Read the CA back. Raises DeploymentError naming the file that is wrong."""
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"{cert_path}: cannot read the CA certificate: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise DeploymentError(f"{key_path}: cannot read the CA key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise DeploymentError(f"{key_path}: the CA key is not an ECDSA key")
        if key.public_key() != cert.public_key():
            raise DeploymentError(f"{key_path}: the CA key does not match {cert_path}")
        return cls(cert=cert, key=key)

    def _leaf(
        self,
        *,
        common_name: str,
        now: dt.datetime,
        validity: dt.timedelta,
        usage: x509.ObjectIdentifier,
        sans: Sequence[x509.GeneralName] = (),
    ) -> IssuedCert:
        key = ec.generate_private_key(ec.SECP256R1())
        organization = self.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        org = str(organization[0].value) if organization else "sealed-doorbell"
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, org))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + validity, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return IssuedCert(cert=builder.sign(self.key, hashes.SHA256()), key=key)

    def issue_server(self, *, hosts: Sequence[str], now: dt.datetime) -> IssuedCert:
        """The broker's certificate: CN the first host, a SAN entry per host (IP or DNS)."""
        sans: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        return self._leaf(
            common_name=hosts[0],
            now=now,
            validity=SERVER_VALIDITY,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=sans,
        )

    def issue_crl(
        self,
        revoked: Sequence[tuple[int, dt.datetime]],
        *,
        now: dt.datetime,
        number: int,
    ) -> bytes:
        """A PEM CRL signed by this CA listing `revoked` (serial, revocation time).

        ``next_update`` is the CA's own expiry: OpenSSL refuses every client once a CRL
        it checks has expired, and no certificate this CA issues outlives the CA, so a
        CRL that lasts as long as the CA can never lock the deployment out by age.
        `number` is the CRL number (RFC 5280 section 5.2.3); give a larger one each time.
        """
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - BACKDATE)
            .next_update(self.cert.not_valid_after_utc)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        for serial, at in sorted(revoked):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(at)
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def issue_client(self, *, common_name: str, now: dt.datetime) -> IssuedCert:
        """An MQTT client certificate; the broker takes its CN as the MQTT username.

        The subject alternative name repeats the identity as a URN (RFC 5280 profiles
        want a SAN on every end-entity certificate); it is never a DNS name or an IP
        address, so no client certificate could name a host.
        """
        return self._leaf(
            common_name=common_name,
            now=now,
            validity=CLIENT_VALIDITY,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            sans=[x509.UniformResourceIdentifier(f"{CLIENT_URN_PREFIX}{common_name}")],
        )
