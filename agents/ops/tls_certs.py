"""A local certificate authority for Mosquitto's TLS listener.

Devices on other hosts reach Mosquitto over TLS. A CA of the operator's own, rather than
a public one, means a client that trusts ``ca.crt`` accepts this broker and nothing else a
public CA ever signed. Keys are ECDSA P-256: small, cheap for devices, and supported by
every OpenSSL that Mosquitto is built against.

Files in the certificate directory: ``ca.crt``, ``ca.key`` (keep it away from the broker
host once the certificates exist), ``server.crt``, ``server.key`` (Mosquitto's), and
``client-NAME.crt``, ``client-NAME.key`` for clients that authenticate with a certificate.
Private keys are written with mode 0600; an existing CA is reused, never replaced, unless
``force`` is given, so certificates issued earlier stay valid.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
DEFAULT_DAYS = 825
# Backdate "not before" a little so a device whose clock is slightly behind still accepts.
CLOCK_SKEW = timedelta(minutes=5)
ALWAYS_NAMES = ("localhost", "127.0.0.1")
# Client names become file names: the account-name alphabet, no leading dot.
CLIENT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:\*\.)?{HOST_LABEL}(?:\.{HOST_LABEL})*")

IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CertError(Exception):
    """Certificates that cannot be written as asked; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class CertFiles:
    """Where the CA, the server's and the clients' certificates and keys live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """What clients trust (``--mqtt-tls-ca``) and Mosquitto's ``cafile``."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA's private key: whoever holds it can issue a broker certificate."""
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """Mosquitto's ``certfile``."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        """Mosquitto's ``keyfile``."""
        return self.directory / "server.key"

    def client_cert(self, name: str) -> Path:
        """A client's certificate."""
        return self.directory / f"client-{name}.crt"

    def client_key(self, name: str) -> Path:
        """A client's private key."""
        return self.directory / f"client-{name}.key"


@dataclass(slots=True)
class CertReport:
    """What ``make_certs`` wrote and what it left as it was."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def make_certs(
    directory: Path,
    *,
    hosts: Iterable[str] = (),
    clients: Iterable[str] = (),
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> CertReport:
    """Create (or reuse) the CA, then issue the server and the named clients' certificates.

    The server certificate is issued when it is missing, when ``hosts`` are given (its
    names are then localhost, 127.0.0.1 and those hosts) or with a new CA; otherwise it
    is kept, so adding a client does not drop names an earlier run put in it.
    """
    hosts = list(hosts)
    clients = list(clients)
    server_names = _server_names(hosts)
    for name in clients:
        if not CLIENT_NAME.fullmatch(name):
            raise CertError(f"client name {name!r}: use A-Z a-z 0-9 . _ - (no leading dot)")
    if days < 1:
        raise CertError("--days must be at least 1")
    files = CertFiles(directory)
    now = datetime.now(UTC)
    report = CertReport()
    directory.mkdir(parents=True, exist_ok=True)

    new_ca = force or not files.ca_cert.exists()
    if new_ca:
        if not force and files.ca_key.exists():
            raise CertError(f"{files.ca_key} exists without ca.crt; move it away or use --force")
        new_key, ca_cert = _new_ca(now, max(CA_DAYS, days))
        _write_key(files.ca_key, new_key, report)
        _write_cert(files.ca_cert, ca_cert, report)
        issuer = _Issuer(new_key, ca_cert, now, days)
    else:
        issuer = _Issuer(*load_ca(files), now, days)
        ca_cert = issuer.cert
        report.kept += [files.ca_cert, files.ca_key]
        if now + timedelta(days=days) > ca_cert.not_valid_after_utc:
            raise CertError(
                f"the CA in {directory} expires on {ca_cert.not_valid_after_utc:%Y-%m-%d}: "
                "use fewer --days, or --force for a new CA"
            )

    server_files = (files.server_cert, files.server_key)
    if new_ca or hosts or not all(path.exists() for path in server_files):
        key, cert = issuer.issue(hosts[0] if hosts else "localhost", server_names)
        _write_key(files.server_key, key, report)
        _write_cert(files.server_cert, cert, report)
    else:
        report.kept += list(server_files)

    for name in clients:
        key, cert = issuer.issue(name, None)
        _write_key(files.client_key(name), key, report)
        _write_cert(files.client_cert(name), cert, report)
    return report


def load_ca(files: CertFiles) -> tuple[IssuerKey, x509.Certificate]:
    """The CA certificate and its key, checked to belong together."""
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    except FileNotFoundError as exc:
        raise CertError(f"no CA certificate at {files.ca_cert}") from exc
    except ValueError as exc:
        raise CertError(f"{files.ca_cert} is not a PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CertError(f"{files.ca_cert} exists without its key {files.ca_key}") from exc
    except (ValueError, TypeError) as exc:
        raise CertError(f"{files.ca_key} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertError(f"{files.ca_key}: only ECDSA and RSA CA keys are supported")
    if key.public_key() != cert.public_key():
        raise CertError(f"{files.ca_key} is not the key of {files.ca_cert}")
    return key, cert


def _server_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in [*ALWAYS_NAMES, *hosts]:
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not HOST_NAME.fullmatch(host):
                raise CertError(
                    f"--host {host!r} is neither an IP address nor a DNS name"
                ) from None
            name = x509.DNSName(host.lower())
        if name not in names:
            names.append(name)
    return names


def _new_ca(now: datetime, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix tells two local CAs apart in a trust store or an error message.
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"micropay CA {secrets.token_hex(4)}")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@dataclass(frozen=True, slots=True)
class _Issuer:
    """The CA and the validity period of the certificates this run issues."""

    key: IssuerKey
    cert: x509.Certificate
    now: datetime
    days: int

    def issue(
        self, common_name: str, server_names: list[x509.GeneralName] | None
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A leaf certificate: for the server with ``server_names``, else for a client.

        The extended key usage keeps the two apart: a client's certificate from the same
        CA cannot pose as the broker.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - CLOCK_SKEW)
            .not_valid_after(self.now + timedelta(days=self.days))
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
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(server_names), critical=False
            )
        return key, builder.sign(self.key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, report: CertReport) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _replace(path, data, 0o600)
    report.written.append(path)


def _write_cert(path: Path, cert: x509.Certificate, report: CertReport) -> None:
    _replace(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    report.written.append(path)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write a new file and rename it over ``path``: never a half-written or open key."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:  # mkstemp creates it with mode 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
