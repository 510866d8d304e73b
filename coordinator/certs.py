"""TLS certificates: a local development CA and server certificate (``gridpilot certs dev``),
and the check that a configured certificate and key can serve HTTPS.

The dev CA is for trying TLS out on one machine or a test bed; production coordinators
use a certificate from the site's or the grid's CA.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coordinator.errors import CoordinatorError

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 825
"""The longest server certificate lifetime clients such as macOS still accept."""

GeneralName = Union[x509.DNSName, x509.IPAddress]


class CertificateError(CoordinatorError):
    """A certificate or key that cannot be written or cannot serve TLS."""

    code = "tls_certificate"


@dataclasses.dataclass(frozen=True)
class DevCertificates:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    hosts: tuple[str, ...]


def write_dev_certificates(
    out_dir: Path, hosts: Sequence[str] = (), *, now: datetime | None = None
) -> DevCertificates:
    """Write ``ca.pem``, ``ca-key.pem``, ``server.pem`` and ``server-key.pem`` into
    ``out_dir``; the server certificate names localhost, 127.0.0.1, ::1 and ``hosts``."""
    moment = now if now is not None else datetime.now(timezone.utc)
    names = tuple(dict.fromkeys([*DEFAULT_HOSTS, *hosts]))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridpilot development CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), moment, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    server_cert = (
        _builder(server_name, ca_name, server_key.public_key(), moment, SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    result = DevCertificates(
        ca_cert=out_dir / "ca.pem",
        ca_key=out_dir / "ca-key.pem",
        server_cert=out_dir / "server.pem",
        server_key=out_dir / "server-key.pem",
        hosts=names,
    )
    _write(result.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(result.ca_key, _key_pem(ca_key), 0o600)
    _write(result.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(result.server_key, _key_pem(server_key), 0o600)
    return result


def check_server_files(cert_file: str, key_file: str) -> None:
    """Raise ``CertificateError`` unless the certificate and key load as a TLS server pair."""
    for name in (cert_file, key_file):
        if not Path(name).is_file():
            raise CertificateError(f"TLS file not found: {name}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise CertificateError(
            f"cannot serve TLS with certificate {cert_file} and key {key_file}: {exc}"
        ) from exc


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Back-dated a little so a client whose clock lags still accepts it.
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(path, mode)
    except OSError as exc:
        raise CertificateError(f"cannot write {path}: {exc.strerror}") from exc
