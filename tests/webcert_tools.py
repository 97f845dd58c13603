"""Certificates for the client-certificate tests, each with exactly one thing wrong when asked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certserver.keys import PrivateKey, to_pkcs8_pem
from certserver.pem import certificate_pem, certificates_pem

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey = None  # type: ignore[assignment]

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
        cert_path.write_bytes(certificate_pem(self.cert))
        key_path.write_bytes(to_pkcs8_pem(self.key))
        return cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ec_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ca(
    cn: str,
    issuer: Issued | None = None,
    *,
    is_ca: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A root (no ``issuer``) or an intermediate."""
    key = ec_key()
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def leaf(
    issuer: Issued,
    names: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    cn: str = "localhost",
    key: PrivateKey | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    san: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    import ipaddress

    key = key or ec_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 90 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), False)
    if san:
        general: list[x509.GeneralName] = []
        for name in names:
            try:
                general.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                general.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(general), False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class TwoLevel:
    """root -> intermediate -> leaf (for localhost and 127.0.0.1)."""

    root: Issued
    intermediate: Issued
    leaf: Issued


def two_level() -> TwoLevel:
    root = ca("certserver test root")
    intermediate = ca("certserver test intermediate", root)
    return TwoLevel(root, intermediate, leaf(intermediate))


def scrambled_bundle(pki: TwoLevel) -> bytes:
    """Root first, the intermediate twice, with CRLF line ends: what operators really send."""
    certs = [pki.root.cert, pki.intermediate.cert, pki.root.cert, pki.intermediate.cert]
    return certificates_pem(certs).replace(b"\n", b"\r\n")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def rsa_key(bits: int) -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)
