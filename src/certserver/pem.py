"""The one tolerant reader of certificates, keys and CSRs (PEM, DER, PKCS#7), and the writer.

Everything that reads certificate material from a user goes through :func:`parse`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certserver.keys import PrivateKey

_BEGIN_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")
_CERT_LABELS = {b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CERTIFICATE"}
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"}


class ParseError(ValueError):
    """Raised with a short reason (never the input bytes)."""


@dataclass
class Parsed:
    """Everything found in one input, in the order it appeared."""

    certificates: list[x509.Certificate] = field(default_factory=list)
    csrs: list[x509.CertificateSigningRequest] = field(default_factory=list)
    private_keys: list[PrivateKey] = field(default_factory=list)
    encrypted_keys: int = 0
    public_keys: list[object] = field(default_factory=list)
    encoding: str = "PEM"
    duplicates: int = 0

    def describe(self) -> str:
        """What was found, for messages: ``a certificate and a private key``."""
        parts = [
            _count(len(self.certificates), "certificate"),
            _count(len(self.csrs), "CSR"),
            _count(len(self.private_keys), "private key"),
            _count(self.encrypted_keys, "encrypted private key"),
            _count(len(self.public_keys), "public key"),
        ]
        found = [part for part in parts if part]
        if not found:
            return "nothing"
        return found[0] if len(found) == 1 else ", ".join(found[:-1]) + " and " + found[-1]

    @property
    def empty(self) -> bool:
        return not (
            self.certificates
            or self.csrs
            or self.private_keys
            or self.encrypted_keys
            or self.public_keys
        )


def parse(data: bytes, *, passphrase: bytes | None = None) -> Parsed:
    """Read every certificate, CSR and key in ``data``: PEM with any number of blocks, DER,
    PKCS#7, or PKCS#12 (with ``passphrase``; the key, its certificate, then the others).
    ``passphrase`` also opens encrypted PEM keys. Repeated certificates are kept once.

    Raises :class:`ParseError` when nothing usable is found or a block is damaged.
    """
    if not data.strip():
        raise ParseError("is empty")
    if b"-----BEGIN " in data:
        found = _parse_pem(data, passphrase)
    elif _looks_like_pkcs12(data):
        found = _parse_pkcs12(data, passphrase)
    else:
        found = _parse_der(data, passphrase)
    return _without_duplicates(found)


def _without_duplicates(found: Parsed) -> Parsed:
    seen: set[bytes] = set()
    unique = []
    for cert in found.certificates:
        digest = cert.fingerprint(hashes.SHA256())
        if digest not in seen:
            seen.add(digest)
            unique.append(cert)
    found.duplicates = len(found.certificates) - len(unique)
    found.certificates = unique
    return found


def _count(number: int, noun: str) -> str:
    if number == 0:
        return ""
    return f"a {noun}" if number == 1 else f"{number} {noun}s"


#: PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (pkcs7-data), ... }
_PKCS12_VERSION = b"\x02\x01\x03"
_PKCS7_DATA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01"


def _looks_like_pkcs12(data: bytes) -> bool:
    return data[:1] == b"\x30" and _PKCS12_VERSION in data[:8] and _PKCS7_DATA_OID in data[:32]


def _parse_pkcs12(data: bytes, passphrase: bytes | None) -> Parsed:
    bundle = None
    for attempt in (passphrase, None, b"") if passphrase else (None, b""):
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
            break
        except ValueError:
            continue
        except UnsupportedAlgorithm:
            raise ParseError("PKCS#12 uses an unsupported algorithm") from None
    if bundle is None:
        if passphrase is None:
            raise ParseError("a PKCS#12 file that needs its passphrase") from None
        raise ParseError("PKCS#12: wrong passphrase, or a damaged file") from None
    found = Parsed(encoding="PKCS#12")
    if bundle.key is not None:
        found.private_keys.append(_private_key(bundle.key))
    if bundle.cert is not None:
        found.certificates.append(bundle.cert.certificate)
    found.certificates.extend(item.certificate for item in bundle.additional_certs)
    if found.empty:
        raise ParseError("PKCS#12 file holds nothing")
    return found


def _parse_pem(data: bytes, passphrase: bytes | None = None) -> Parsed:
    found = Parsed(encoding="PEM")
    for label, body in _blocks(data):
        try:
            if label in _CERT_LABELS:
                found.certificates.append(x509.load_pem_x509_certificate(_as_cert_label(body)))
            elif label in _CSR_LABELS:
                found.csrs.append(x509.load_pem_x509_csr(body))
            elif label == b"ENCRYPTED PRIVATE KEY" or (
                label in _KEY_LABELS and b"Proc-Type: 4,ENCRYPTED" in body
            ):
                if passphrase is None:
                    found.encrypted_keys += 1
                else:
                    found.private_keys.append(_decrypted_key(body, passphrase))
            elif label in _KEY_LABELS:
                found.private_keys.append(
                    _private_key(serialization.load_pem_private_key(body, None))
                )
            elif label == b"PKCS7":
                found.certificates.extend(_quietly(pkcs7.load_pem_pkcs7_certificates, body))
            elif label == b"PUBLIC KEY":
                found.public_keys.append(serialization.load_pem_public_key(body))
        except ParseError:
            raise
        except UnsupportedAlgorithm:
            raise ParseError(f"{label.decode().lower()} uses an unsupported algorithm") from None
        except (ValueError, TypeError):
            # cryptography's parser message is internals; the block's kind is what helps
            raise ParseError(f"damaged {label.decode().lower()} block") from None
    if found.empty:
        raise ParseError("no certificate, key or CSR in PEM input")
    return found


def _blocks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Each ``(label, whole block)``, in one linear pass (no regex backtracking over input)."""
    position = 0
    while (begin := _BEGIN_RE.search(data, position)) is not None:
        label = begin.group(1)
        end_marker = b"-----END " + label + b"-----"
        end = data.find(end_marker, begin.end())
        if end < 0:
            raise ParseError(f"unterminated {label.decode().lower()} block")
        position = end + len(end_marker)
        yield label, data[begin.start() : position]


def _as_cert_label(block: bytes) -> bytes:
    if block.startswith(b"-----BEGIN CERTIFICATE-----"):
        return block
    body = block.split(b"\n", 1)[1].rsplit(b"-----END", 1)[0]
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


def _parse_der(data: bytes, passphrase: bytes | None = None) -> Parsed:
    found = Parsed(encoding="DER")
    loaders: tuple[Callable[[], None], ...] = (
        lambda: found.certificates.append(x509.load_der_x509_certificate(data)),
        lambda: found.csrs.append(x509.load_der_x509_csr(data)),
        lambda: found.private_keys.append(_der_key(data, passphrase)),
        lambda: found.certificates.extend(_quietly(pkcs7.load_der_pkcs7_certificates, data)),
        lambda: found.public_keys.append(serialization.load_der_public_key(data)),
    )
    for load in loaders:
        try:
            load()
        except _WrongPassphrase:
            raise ParseError("wrong passphrase for an encrypted private key") from None
        except TypeError as exc:
            if "encrypted" in str(exc).lower() or "password" in str(exc).lower():
                found.encrypted_keys += 1
                return found
        except (ValueError, ParseError, UnsupportedAlgorithm):
            continue
        else:
            return found
    raise ParseError("not a certificate, key, CSR or PKCS#7 bundle in PEM or DER")


def _quietly(
    load: Callable[[bytes], list[x509.Certificate]], data: bytes
) -> list[x509.Certificate]:
    """PKCS#7 from openssl is often BER; cryptography reads it but warns on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(data)


class _WrongPassphrase(Exception):
    """Escapes the DER loaders' trial and error: the input was a key, the passphrase wrong."""


def _der_key(data: bytes, passphrase: bytes | None) -> PrivateKey:
    try:
        return _private_key(serialization.load_der_private_key(data, passphrase))
    except ValueError as exc:
        text = str(exc).lower()
        if passphrase is not None and ("decrypt" in text or "password" in text):
            raise _WrongPassphrase from None
        raise


def _decrypted_key(block: bytes, passphrase: bytes) -> PrivateKey:
    try:
        return _private_key(serialization.load_pem_private_key(block, passphrase))
    except (ValueError, TypeError):
        raise ParseError("wrong passphrase for an encrypted private key") from None


def _private_key(key: object) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise ParseError(f"unsupported private key type {type(key).__name__}")


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificates_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(certificate_pem(cert) for cert in certs)
