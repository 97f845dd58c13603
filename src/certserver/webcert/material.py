"""What an operator gives for the client certificate, read once through the tolerant reader.

A certificate file may hold the leaf alone, the leaf and its chain, or a PKCS#12 with the
key too; the key file may be PKCS#1, SEC1 or PKCS#8, encrypted or not; the bundle may hold
the chain in any order, with duplicates. Errors name the file and the problem, never bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certserver.errors import FileProblem
from certserver.files import read_passphrase, read_regular_file
from certserver.keys import PrivateKey
from certserver.pem import Parsed, ParseError, parse

_MAX_INPUT = 1 << 20

#: Asks for a passphrase (``what`` names the file); only ever given on a terminal.
Ask = Callable[[str], bytes]


@dataclass(frozen=True)
class Material:
    """The certificates (cert file first, then the bundle), the key, and where they came from."""

    cert_path: Path
    certificates: tuple[x509.Certificate, ...]
    key: PrivateKey | None = field(repr=False)
    key_path: Path | None
    bundle_path: Path | None
    #: the certificates of the bundle, in the order given (duplicates kept once)
    bundle: tuple[x509.Certificate, ...] = ()
    #: repeated certificates dropped while reading, across all inputs
    duplicates: int = 0


def load(
    cert: Path,
    key: Path | None = None,
    bundle: Path | None = None,
    *,
    key_passphrase_file: Path | None = None,
    p12_passphrase_file: Path | None = None,
    ask: Ask | None = None,
) -> Material:
    """Read the inputs; refuse with :class:`FileProblem` what cannot be used at all."""
    p12_passphrase = read_passphrase(p12_passphrase_file) if p12_passphrase_file else None
    key_passphrase = read_passphrase(key_passphrase_file) if key_passphrase_file else None
    # a key may ride in the certificate file (PKCS#12, or PEM blocks of both kinds)
    cert_parsed = _read(cert, p12_passphrase or key_passphrase, ask, "certificate")
    if not cert_parsed.certificates:
        raise FileProblem(cert, f"holds no certificate (found {cert_parsed.describe()})")
    private_key = cert_parsed.private_keys[0] if cert_parsed.private_keys else None
    if key is not None:
        key_parsed = _read(key, key_passphrase, ask, "private key")
        if len(key_parsed.private_keys) != 1 or key_parsed.certificates:
            raise FileProblem(key, f"should hold one private key, found {key_parsed.describe()}")
        private_key = key_parsed.private_keys[0]
    elif cert_parsed.encrypted_keys and private_key is None:
        raise FileProblem(cert, "its private key is encrypted: give --key-passphrase-file")
    certificates = list(cert_parsed.certificates)
    bundle_certs: list[x509.Certificate] = []
    duplicates = cert_parsed.duplicates
    if bundle is not None:
        bundle_parsed = _read(bundle, p12_passphrase, ask, "CA bundle")
        if bundle_parsed.private_keys or bundle_parsed.encrypted_keys:
            raise FileProblem(bundle, "holds a private key, which must not be in a CA bundle")
        if not bundle_parsed.certificates:
            raise FileProblem(bundle, f"holds no certificate (found {bundle_parsed.describe()})")
        duplicates += bundle_parsed.duplicates
        seen = {_digest(c) for c in certificates}
        for candidate in bundle_parsed.certificates:
            if _digest(candidate) in seen:
                duplicates += 1
                continue
            seen.add(_digest(candidate))
            bundle_certs.append(candidate)
    return Material(
        cert_path=cert,
        certificates=tuple(certificates + bundle_certs),
        key=private_key,
        key_path=key,
        bundle_path=bundle,
        bundle=tuple(bundle_certs),
        duplicates=duplicates,
    )


def _read(path: Path, passphrase: bytes | None, ask: Ask | None, what: str) -> Parsed:
    data = read_regular_file(path, _MAX_INPUT, f"a {what} file")
    try:
        parsed = parse(data, passphrase=passphrase)
    except ParseError as exc:
        if passphrase is None and "needs its passphrase" in str(exc):
            if ask is None:
                raise FileProblem(
                    path, "is a PKCS#12 file that needs its passphrase: give --p12-passphrase-file"
                ) from None
            return _read(path, ask(str(path)), None, what)
        raise FileProblem(path, str(exc)) from None
    if parsed.encrypted_keys and not parsed.private_keys:
        if ask is None:
            raise FileProblem(path, "the private key is encrypted: give --key-passphrase-file")
        return _read(path, ask(str(path)), None, what)
    return parsed


def _digest(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def spki(public_key: object) -> bytes:
    """A public key's SubjectPublicKeyInfo DER, to compare keys."""
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
