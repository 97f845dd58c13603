"""What an enterprise CA signed, checked before anything is imported.

Enterprise CAs routinely drop what a CSR asks for (subject fields, URI SANs, key usages),
so nothing they return is trusted as asked: every check here lists its problems, all of
them, and an import goes ahead only when there are none.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certserver.errors import CertserverError
from certserver.extensions import extension_of
from certserver.hosts import Host
from certserver.identity import Ccid, Component, Identity
from certserver.inspection import is_self_signed, name_text
from certserver.keys import certificate_key_sha256
from certserver.mtls import identity_of
from certserver.verify import key_id_problems

_SHA256 = hashes.SHA256()
_EKUS = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}


@dataclass(frozen=True, slots=True)
class Chain:
    """An enterprise's certificates: self-signed anchors and the intermediates below them."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate]) -> Chain:
        anchors: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        for cert in certificates:
            (anchors if is_self_signed(cert) else intermediates).append(cert)
        return cls(tuple(anchors), tuple(intermediates))

    def with_intermediates(self, more: Iterable[x509.Certificate]) -> Chain:
        """This chain and the CA certificates in ``more`` as intermediates; a root among
        them is not trusted (only ``--chain`` names roots) and is left out."""
        known = {c.fingerprint(_SHA256) for c in (*self.anchors, *self.intermediates)}
        extra = [c for c in more if c.fingerprint(_SHA256) not in known and not is_self_signed(c)]
        return Chain(self.anchors, (*self.intermediates, *extra))

    def path_of(self, leaf: x509.Certificate, now: dt.datetime) -> tuple[x509.Certificate, ...]:
        """The verified path from ``leaf`` (excluded) up to its anchor (included).

        Only the chain is checked here (signatures, validity, the CAs' constraints); what
        the leaf itself must carry is :func:`leaf_problems`'s.
        """
        verifier = (
            PolicyBuilder()
            .store(Store(list(self.anchors)))
            .time(now)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        return tuple(verifier.verify(leaf, list(self.intermediates)).chain[1:])


def chain_problem(leaf: x509.Certificate, chain: Chain, now: dt.datetime, what: str) -> str | None:
    """Why ``leaf`` does not verify to ``chain``'s anchors now (the way certserver's mutual
    TLS will check it), or None when it does."""
    if not chain.anchors:
        return f"{what} holds no self-signed root CA to trust"
    try:
        path = chain.path_of(leaf, now)
    except (VerificationError, ValueError) as exc:
        return f"does not verify to the roots in {what}: {verifier_message(exc)}"
    missing = key_id_problems(leaf, path)
    if missing:
        return "; ".join(missing)
    return None


_REPR = re.compile(r"\s*\(encountered processing <Certificate.*\)\s*$", re.DOTALL)


def verifier_message(exc: Exception) -> str:
    """cryptography's verification error without the Python reprs it appends."""
    return _REPR.sub("", str(exc)) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class CaCheck:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: How long the component certificates under this CA may be valid.
    component_days: int = 0


def check_signed_ca(
    cert: x509.Certificate,
    expected_key: str,
    expected_subject: x509.Name,
    now: dt.datetime,
    component_days: int,
) -> CaCheck:
    """The deployment CA an enterprise signed: our key, a CA that may sign leaves, valid now,
    and long enough for the component certificates (else they are capped, with a warning)."""
    if certificate_key_sha256(cert) != expected_key:
        return CaCheck(["is not a certificate for the deployment CA's pending key"])
    problems: list[str] = []
    warnings: list[str] = []
    constraints = extension_of(cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        problems.append("is not a CA certificate (basicConstraints CA:TRUE is missing)")
    elif constraints.path_length != 0:
        warnings.append(
            "the enterprise CA did not keep pathLen 0: the deployment CA could sign sub-CAs"
        )
    usage = extension_of(cert, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        problems.append("lacks keyUsage keyCertSign, so it may not sign certificates")
    elif not usage.crl_sign:
        warnings.append("lacks keyUsage cRLSign: certserver cannot sign this CA's CRLs")
    if extension_of(cert, x509.SubjectKeyIdentifier) is None:
        problems.append("has no subjectKeyIdentifier, which strict TLS verification requires")
    if extension_of(cert, x509.AuthorityKeyIdentifier) is None:
        problems.append("has no authorityKeyIdentifier, which strict TLS verification requires")
    if cert.subject != expected_subject:
        warnings.append(
            f"the enterprise CA changed the subject to {name_text(cert.subject)} "
            f"(asked for {name_text(expected_subject)})"
        )
    problems += _validity_problems(cert, now)
    left = (cert.not_valid_after_utc - now) // dt.timedelta(days=1)  # whole days that fit
    if not problems and left < component_days:
        warnings.append(
            f"the deployment CA expires on {cert.not_valid_after_utc:%Y-%m-%d}, so the component "
            f"certificates are capped at {left} days (asked for {component_days})"
        )
        component_days = left
    if not problems and component_days < 1:
        problems.append("expires in less than a day, too soon to issue certificates under it")
    return CaCheck(problems, warnings, component_days)


@dataclass(frozen=True, slots=True)
class PendingLeaf:
    component: Component
    public_key_sha256: str
    hosts: tuple[Host, ...]


@dataclass(frozen=True, slots=True)
class Matched:
    component: Component
    certificate: x509.Certificate
    source: str


@dataclass(frozen=True, slots=True)
class LeafMatch:
    """Signed certificates sorted out: good ones per component, and every problem."""

    good: tuple[Matched, ...]
    problems: tuple[str, ...]
    #: CA certificates found among the inputs (an enterprise returning its chain).
    extra_intermediates: tuple[x509.Certificate, ...]


def match_leaves(
    inputs: Sequence[tuple[str, x509.Certificate]],
    pending: Sequence[PendingLeaf],
    ccid: Ccid,
    chain: Chain,
    chain_source: str,
    now: dt.datetime,
    imported: Sequence[x509.Certificate] = (),
) -> LeafMatch:
    """Match each signed certificate to its component by public key, and check it.

    Certificates ``imported`` before are passed over (an import can be run again), but they
    must still verify to ``chain`` and come from the same issuing CA as the new ones.
    """
    by_key = {item.public_key_sha256: item for item in pending}
    found: dict[Component, list[tuple[str, x509.Certificate]]] = {}
    cas: list[x509.Certificate] = []
    problems: list[str] = []
    seen = {cert.fingerprint(_SHA256) for cert in imported}
    for source, cert in inputs:
        fp = cert.fingerprint(_SHA256)
        if fp in seen:
            continue
        seen.add(fp)
        key = certificate_key_sha256(cert)
        item = by_key.get(key) if key is not None else None
        if key is None:
            problems.append(
                f"{source}: {name_text(cert.subject)} has a key algorithm certserver "
                "does not support"
            )
        elif item is not None:
            found.setdefault(item.component, []).append((source, cert))
        elif _is_ca(cert):
            cas.append(cert)
        else:
            problems.append(
                f"{source}: {name_text(cert.subject)} matches no pending key of this deployment"
            )
    full_chain = chain.with_intermediates(cas)
    issuers: dict[bytes, str] = {}  # the issuing CA's fingerprint -> where it was seen
    for cert in imported:
        issuer = _issuer_of(cert, full_chain, now)
        if issuer is None:
            problem = chain_problem(cert, full_chain, now, chain_source)
            problems.append(f"a certificate imported before {problem}")
        else:
            issuers.setdefault(issuer.fingerprint(_SHA256), "the certificates imported before")
    good: list[Matched] = []
    for component in sorted(found, key=lambda c: c.folder):
        certs = found[component]
        if len(certs) > 1:
            sources = ", ".join(source for source, _ in certs)
            problems.append(f"{component}: more than one signed certificate ({sources})")
            continue
        source, cert = certs[0]
        item = by_key[certificate_key_sha256(cert) or ""]
        wrong = leaf_problems(cert, Identity(ccid, component), item.hosts, now)
        chained = chain_problem(cert, full_chain, now, chain_source)
        if chained is not None:
            wrong.append(chained)
        if wrong:
            problems += [f"{source}: {component}: {problem}" for problem in wrong]
            continue
        issuer = _issuer_of(cert, full_chain, now)
        assert issuer is not None  # it verified just above
        issuers.setdefault(issuer.fingerprint(_SHA256), source)
        good.append(Matched(component, cert, source))
    if len(issuers) > 1:
        problems.append(
            "the certificates come from more than one issuing CA (seen in "
            + "; ".join(issuers.values())
            + "): a deployment has one"
        )
        good = []
    return LeafMatch(tuple(good), tuple(problems), tuple(cas))


def _issuer_of(cert: x509.Certificate, chain: Chain, now: dt.datetime) -> x509.Certificate | None:
    try:
        return chain.path_of(cert, now)[0]
    except (VerificationError, ValueError):
        return None


def leaf_problems(
    cert: x509.Certificate, identity: Identity, hosts: Sequence[Host], now: dt.datetime
) -> list[str]:
    """Every way a signed component certificate lost what its CSR asked for."""
    problems: list[str] = []
    try:
        found = identity_of(cert)
    except CertserverError as exc:
        problems.append(f"lost the identity: {exc.message} (wanted {identity.spiffe_id})")
    else:
        if found != identity:
            problems.append(f"carries the identity {found.spiffe_id}, not {identity.spiffe_id}")
    units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if identity.ccid.value not in units:
        problems.append(
            f"lost the subject's OU={identity.ccid} (subject {name_text(cert.subject)})"
        )
    usage = extension_of(cert, x509.ExtendedKeyUsage)
    missing = [name for oid, name in _EKUS.items() if usage is None or oid not in usage]
    if missing:
        problems.append(f"lacks extendedKeyUsage {' and '.join(missing)}")
    if _is_ca(cert):
        problems.append("is signed as a CA (basicConstraints CA:TRUE), not as a leaf")
    key_usage = extension_of(cert, x509.KeyUsage)
    if key_usage is not None and not key_usage.digital_signature:
        problems.append("lacks keyUsage digitalSignature, which TLS needs")
    san = extension_of(cert, x509.SubjectAlternativeName)
    names = set()
    if san is not None:
        names = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        names |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    lost = [host.text for host in hosts if host.text not in names]
    if lost:
        problems.append(f"lost the host names {', '.join(lost)}")
    problems += _validity_problems(cert, now)
    return problems


def _validity_problems(cert: x509.Certificate, now: dt.datetime) -> list[str]:
    if now < cert.not_valid_before_utc:
        return [f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"]
    if now > cert.not_valid_after_utc:
        return [f"expired on {cert.not_valid_after_utc:%Y-%m-%d}"]
    return []


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = extension_of(cert, x509.BasicConstraints)
    return constraints is not None and constraints.ca
