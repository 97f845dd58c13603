"""Private keys: the only module that turns key objects into bytes and back.

Key bytes never leave through logs or exceptions: errors name the file and the problem only.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import textwrap
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from certserver.errors import InvalidInput

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeySpec(enum.Enum):
    """The key types certserver makes; ``value`` is the spelling users type."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(spec.value for spec in cls)
            raise InvalidInput(f"unknown key type {text!r}: expected one of {names}") from None

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")

    @property
    def size(self) -> int:
        return {"ec-p256": 256, "ec-p384": 384}.get(self.value) or int(self.value[4:])

    def generate(self) -> PrivateKey:
        if self.is_rsa:
            return rsa.generate_private_key(public_exponent=65537, key_size=self.size)
        curve: ec.EllipticCurve = ec.SECP256R1() if self is KeySpec.EC_P256 else ec.SECP384R1()
        return ec.generate_private_key(curve)

    def signature_hash(self) -> hashes.SHA256 | hashes.SHA384:
        """SHA-384 for P-384 (matching strength), SHA-256 otherwise."""
        return hashes.SHA384() if self is KeySpec.EC_P384 else hashes.SHA256()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a person wants to know about a key: its algorithm and size."""

    algorithm: str
    size: int

    def __str__(self) -> str:
        return f"{self.algorithm} {self.size}"


def describe(key: object) -> KeyInfo:
    """Algorithm and size of a public or private key of any type cryptography loads."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeyInfo("RSA", key.key_size)
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return KeyInfo(f"EC {key.curve.name}", key.curve.key_size)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return KeyInfo("Ed25519", 256)
    return KeyInfo(type(key).__name__, 0)


def spec_of(key: PrivateKey) -> KeySpec:
    """The KeySpec a key was made with (refuses keys certserver would not make)."""
    info = describe(key)
    table = {
        ("EC secp256r1", 256): KeySpec.EC_P256,
        ("EC secp384r1", 384): KeySpec.EC_P384,
        ("RSA", 2048): KeySpec.RSA_2048,
        ("RSA", 3072): KeySpec.RSA_3072,
        ("RSA", 4096): KeySpec.RSA_4096,
    }
    try:
        return table[(info.algorithm, info.size)]
    except KeyError:
        raise InvalidInput(f"unsupported key type {info}") from None


def public_key_sha256(public_key: object) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo: how a key, its CSR and its certificate are
    matched."""
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def certificate_key_sha256(cert: x509.Certificate) -> str | None:
    """:func:`public_key_sha256` of a certificate's key; None for an algorithm certserver
    does not support (SM2, a broken key)."""
    try:
        return public_key_sha256(cert.public_key())
    except (UnsupportedAlgorithm, ValueError):
        return None


def to_pkcs8_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def to_pkcs8_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_from_pkcs8_der(der: bytes) -> bytes:
    """PKCS#8 PEM from PKCS#8 DER without parsing the key (the same bytes every time)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n".encode("ascii")


def from_pkcs8_der(der: bytes, *, unsealed: bool = False) -> PrivateKey:
    """The key in PKCS#8 DER. ``unsealed``: the bytes were just unsealed from the store, so
    AES-GCM under the master key vouches that they are a key certserver generated itself;
    OpenSSL's RSA consistency check (about 50 ms for RSA-2048, on every signature) is then
    skipped. Keys from anywhere else are always checked."""
    key = serialization.load_der_private_key(
        der, password=None, unsafe_skip_rsa_key_validation=unsealed
    )
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"unsupported private key type {describe(key)}")
    return key


def profile_spec(public_key: object) -> KeySpec:
    """The KeySpec whose certificate profile fits ``public_key`` (RSA keys get
    keyEncipherment); for keys made elsewhere, whose exact size may not be one of ours."""
    return KeySpec.RSA_2048 if isinstance(public_key, rsa.RSAPublicKey) else KeySpec.EC_P256
