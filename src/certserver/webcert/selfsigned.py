"""The fresh default: a self-signed server certificate made on each installation.

The original product shipped one self-signed certificate (and its key) to every customer;
this one is made here, for the names given, and lives at most 397 days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certserver.errors import InvalidInput
from certserver.hosts import Host
from certserver.keys import KeySpec, PrivateKey
from certserver.profiles import CLIENT_CERT_MAX_DAYS, Validity


def make_default(
    hosts: Sequence[Host],
    now: dt.datetime,
    *,
    spec: KeySpec = KeySpec.EC_P256,
    days: int = CLIENT_CERT_MAX_DAYS,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed serverAuth certificate with a SAN for every host, and its new key."""
    if not hosts:
        raise InvalidInput("give at least one host name (--host)")
    if days > CLIENT_CERT_MAX_DAYS:
        raise InvalidInput(
            f"invalid validity {days} days: a client certificate lives at most "
            f"{CLIENT_CERT_MAX_DAYS} days"
        )
    validity = Validity.starting(now, days)
    key = spec.generate()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certserver default"),
            x509.NameAttribute(NameOID.COMMON_NAME, str(hosts[0])[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=spec.is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([host.general_name() for host in dict.fromkeys(hosts)]),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return builder.sign(key, spec.signature_hash()), key
