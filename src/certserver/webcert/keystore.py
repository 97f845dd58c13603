"""Java's PKCS#12 files: a keystore Java 17 reads, and a truststore it sees entries in.

Java ignores an unencrypted PKCS#12 key bag (the keystore shows no key), so the key is
always encrypted (PBES2, AES-256, PBKDF2-SHA256; MAC HMAC-SHA256). A truststore's
certificate bags need Java's trust attribute, which ``serialize_java_truststore`` writes;
without it keytool shows 0 entries.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import (
    KeySerializationEncryption,
    PrivateFormat,
    pkcs12,
)

from certserver.keys import PrivateKey

KEY_ALIAS = "tomcat"
_ROUNDS = 100_000


def _encryption(password: bytes) -> KeySerializationEncryption:
    return (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )


def keystore(
    key: PrivateKey,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: bytes,
    alias: str = KEY_ALIAS,
) -> bytes:
    """One key entry named ``alias`` with the full chain (leaf first)."""
    return pkcs12.serialize_key_and_certificates(
        alias.encode(), key, leaf, list(chain), _encryption(password)
    )


def truststore(anchors: Sequence[x509.Certificate], password: bytes) -> bytes:
    """A trusted-certificate entry for each of ``anchors`` (``ca-1``, ``ca-2``, …)."""
    entries = [
        pkcs12.PKCS12Certificate(cert, f"ca-{number}".encode())
        for number, cert in enumerate(anchors, start=1)
    ]
    return pkcs12.serialize_java_truststore(entries, _encryption(password))


def new_password() -> str:
    """A generated store password: 32 URL-safe characters, nothing XML would need escaped."""
    return secrets.token_urlsafe(24)
