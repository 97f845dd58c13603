"""Rules for signing a component's CSR made elsewhere. Every violation is listed, not the first."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certserver.errors import CertserverError
from certserver.hosts import Host
from certserver.identity import Component

_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_MIN_RSA = 2048
_EKUS = frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})


def csr_violations(
    csr: x509.CertificateSigningRequest, component: Component, allowed: Sequence[Host]
) -> tuple[list[str], list[Host]]:
    """What the CSR asks for that policy refuses, and the hosts it may have.

    The subject and any URI SAN are not asked for: the CA sets the identity itself.
    """
    problems: list[str] = []
    try:
        key = csr.public_key()
        signed = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError):
        return ["the CSR's key uses an algorithm that is not allowed (EC P-256+ or RSA)"], []
    if not signed:
        problems.append("the CSR's signature is not valid (no proof of possession)")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA:
            problems.append(f"RSA-{key.key_size} is too weak (at least RSA-{_MIN_RSA})")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _CURVES):
            problems.append(f"curve {key.curve.name} is not allowed (P-256, P-384, P-521)")
    else:
        problems.append(f"{type(key).__name__} keys are not allowed (EC or RSA)")
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension):
        return [*problems, "the CSR's extensions do not parse"], []
    hosts: list[Host] = []
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints):
            if value.ca:
                problems.append("asks to be a CA (CA:TRUE)")
        elif isinstance(value, x509.KeyUsage):
            if value.key_cert_sign or value.crl_sign:
                problems.append("asks for keyCertSign or cRLSign, which only a CA has")
        elif isinstance(value, x509.NameConstraints):
            problems.append("asks for name constraints, which only a CA has")
        elif isinstance(value, x509.ExtendedKeyUsage):
            other = [oid.dotted_string for oid in value if oid not in _EKUS]
            if other:
                problems.append(f"asks for other key usages ({', '.join(other)})")
        elif isinstance(value, x509.SubjectAlternativeName):
            hosts, found = _names(value, allowed, component)
            problems += found
        elif extension.critical and not isinstance(value, x509.SubjectKeyIdentifier):
            name = getattr(extension.oid, "_name", "Unknown OID")
            if name == "Unknown OID":
                name = extension.oid.dotted_string
            problems.append(f"asks for a critical extension certserver does not set ({name})")
    return problems, hosts or list(allowed)


def _names(
    san: x509.SubjectAlternativeName, allowed: Sequence[Host], component: Component
) -> tuple[list[Host], list[str]]:
    hosts: list[Host] = []
    problems: list[str] = []
    for name in san:
        if isinstance(name, x509.UniformResourceIdentifier):
            continue  # the identity is the CA's to set
        if not isinstance(name, x509.DNSName | x509.IPAddress):
            problems.append(f"asks for a {type(name).__name__}, which components do not have")
            continue
        try:
            host = Host.parse(str(name.value))
        except CertserverError as exc:
            problems.append(exc.message)
            continue
        if isinstance(name, x509.DNSName) and host.is_ip:
            problems.append(f"asks for the DNS name {name.value}, which is an IP address")
            continue
        if host not in allowed:
            recorded = ", ".join(h.text for h in allowed) or "none"
            problems.append(f"asks for {host}, not among {component}'s recorded hosts ({recorded})")
        elif host not in hosts:
            hosts.append(host)
    return hosts, problems
