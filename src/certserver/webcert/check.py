"""``client-cert check``: one report of everything wrong with a browser-facing certificate.

Every check gives a :class:`~certserver.verify.Finding` (PASS / WARN / FAIL); nothing stops
at the first problem. The report also carries the chain put in order, which is what an
install writes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from certserver.clock import days_left
from certserver.hosts import Host
from certserver.keys import describe
from certserver.pem import ParseError, parse
from certserver.verify import WARN_DAYS, Finding, Status
from certserver.webcert.material import Material, spki

#: Browsers refuse publicly trusted server certificates valid for longer (CA/B Forum).
MAX_BROWSER_DAYS = 398
MIN_RSA_BITS = 2048
_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
_Add = Callable[[Status, str, str], None]


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    leaf: x509.Certificate
    #: what a server sends after the leaf, in order (intermediates; no self-signed anchor)
    chain: tuple[x509.Certificate, ...]
    #: the self-signed top of the chain when the files hold it (the leaf, for a default)
    anchor: x509.Certificate | None

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if f.status is Status.FAIL]

    @property
    def ok(self) -> bool:
        return not self.failed


def check(
    material: Material,
    now: dt.datetime,
    *,
    hosts: Sequence[Host] = (),
    system_anchors: Sequence[x509.Certificate] = (),
) -> Report:
    """Every finding about ``material``. ``system_anchors`` complete a chain whose root the
    files leave out (as commercial CAs' bundles do), from the system's trust store."""
    findings: list[Finding] = []

    def add(status: Status, name: str, message: str) -> None:
        findings.append(Finding(status, name, message))

    leaf = _leaf(material, add)
    path, anchor, top_issuer = _path(leaf, [c for c in material.certificates if c is not leaf])
    if anchor is None and not _self_signed(path[-1]):
        top_issuer = next((a for a in system_anchors if _issued_by(path[-1], a)), None)
    _chain_findings(material, path, anchor, top_issuer, add)
    members = path  # the anchor, when the files hold it, is the last of the path
    _validity(leaf, members, now, add)
    _lifetime(leaf, add)
    _usage(leaf, add)
    _names(leaf, hosts, add)
    _strength(members, anchor, add)
    chain = tuple(c for c in path[1:] if c is not anchor)
    return Report(tuple(findings), leaf, chain, anchor)


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _leaf(material: Material, add: _Add) -> x509.Certificate:
    first = material.certificates[0]
    if material.key is None:
        add(Status.FAIL, "key", "no private key given (--key)")
        return first
    wanted = spki(material.key.public_key())
    for cert in material.certificates[: len(material.certificates) - len(material.bundle)]:
        if spki(cert.public_key()) == wanted:
            where = "" if cert is first else f" (found as {subject(cert)}, not first)"
            add(Status.PASS, "key", f"matches the certificate{where} ({describe(material.key)})")
            return cert
    source = material.key_path or material.cert_path
    add(Status.FAIL, "key", f"{source} does not match the certificate {subject(first)}")
    return first


def _path(
    leaf: x509.Certificate, pool: list[x509.Certificate]
) -> tuple[list[x509.Certificate], x509.Certificate | None, x509.Certificate | None]:
    """The chain from ``leaf`` up through ``pool``: (path, self-signed anchor, issuer of the
    top when it is in the pool), stopping at a self-signed certificate or a missing issuer."""
    path = [leaf]
    left = list(pool)
    while True:
        current = path[-1]
        if _self_signed(current):
            return path, current, current
        issuer = next((c for c in left if _issued_by(current, c)), None)
        if issuer is None:
            return path, None, None
        left.remove(issuer)
        path.append(issuer)


def _chain_findings(
    material: Material,
    path: list[x509.Certificate],
    anchor: x509.Certificate | None,
    top_issuer: x509.Certificate | None,
    add: _Add,
) -> None:
    top = path[-1]
    shown = " -> ".join(subject(c) for c in path)
    if anchor is not None:
        end = "self-signed leaf" if anchor is path[0] else "to a self-signed root"
        add(Status.PASS, "chain", f"complete: {shown} ({end})")
    elif top_issuer is not None:
        add(
            Status.PASS,
            "chain",
            f"complete: {shown} -> {subject(top_issuer)} (in the system trust store)",
        )
    elif len(path) > 1:
        # the given CAs end below the root, which is neither given nor in the system's
        # store: fine where browsers already trust it (an enterprise root, say)
        add(
            Status.WARN,
            "chain",
            f"ends at {shown}: its issuer {top.issuer.rfc4514_string()} is not given nor in "
            "the system trust store; browsers must already trust it",
        )
    else:
        where = f" in {material.bundle_path}" if material.bundle_path else " (no --ca-bundle)"
        add(
            Status.FAIL,
            "chain",
            f"incomplete: no certificate for {top.issuer.rfc4514_string()}, the issuer of "
            f"{subject(top)}{where}",
        )
    for child, issuer in itertools.pairwise(path):
        if not _is_ca(issuer):
            add(Status.FAIL, "chain", f"{subject(issuer)} signed {subject(child)} but is not a CA")
    used = {id(c) for c in path}
    given = [c for c in material.certificates if id(c) in used]
    if given != path:
        add(Status.WARN, "order", "the certificates were out of order; put in order leaf first")
    if material.duplicates:
        add(Status.WARN, "order", f"dropped {material.duplicates} duplicate certificate(s)")
    unused = [c for c in material.certificates if id(c) not in used]
    if unused:
        names = "; ".join(subject(c) for c in unused)
        add(
            Status.WARN, "order", f"left out {len(unused)} certificate(s) not in the chain: {names}"
        )


def _validity(
    leaf: x509.Certificate, members: list[x509.Certificate], now: dt.datetime, add: _Add
) -> None:
    bad = False
    for cert in members:
        if now > cert.not_valid_after_utc:
            bad = True
            add(
                Status.FAIL,
                "validity",
                f"{subject(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            )
        elif now < cert.not_valid_before_utc:
            bad = True
            add(
                Status.FAIL,
                "validity",
                f"{subject(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z",
            )
    if bad:
        return
    days = days_left(leaf.not_valid_after_utc, now)
    if days < WARN_DAYS:
        add(Status.WARN, "validity", f"the leaf expires in {days} days")
    else:
        add(Status.PASS, "validity", f"{len(members)} certificate(s) valid; leaf: {days} days left")


def _lifetime(leaf: x509.Certificate, add: _Add) -> None:
    span = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    days = round(span / dt.timedelta(days=1))
    if span > dt.timedelta(days=MAX_BROWSER_DAYS):
        add(
            Status.WARN,
            "lifetime",
            f"the leaf is valid for {days} days; browsers refuse public server certificates "
            f"valid for more than {MAX_BROWSER_DAYS}",
        )
    else:
        add(Status.PASS, "lifetime", f"valid for {days} days")


def _usage(leaf: x509.Certificate, add: _Add) -> None:
    problems = []
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        problems.append("no extendedKeyUsage with serverAuth")
    else:
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            problems.append("extendedKeyUsage lacks serverAuth")
    if _is_ca(leaf):
        problems.append("the leaf is a CA certificate (basicConstraints CA:TRUE)")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not (usage.digital_signature or usage.key_encipherment):
            problems.append("keyUsage allows neither digitalSignature nor keyEncipherment")
    for problem in problems:
        add(Status.FAIL, "usage", problem)
    if not problems:
        add(Status.PASS, "usage", "serverAuth")


def _names(leaf: x509.Certificate, hosts: Sequence[Host], add: _Add) -> None:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        add(
            Status.FAIL,
            "names",
            f"no subjectAltName, only the subject {subject(leaf)}: browsers ignore the CN",
        )
        return
    dns = [name.lower() for name in sans.get_values_for_type(x509.DNSName)]
    ips = sans.get_values_for_type(x509.IPAddress)
    shown = ", ".join(dns + [str(ip) for ip in ips]) or "none"
    if not dns and not ips:
        add(Status.FAIL, "names", "subjectAltName holds no DNS name or IP address")
        return
    missing = [str(h) for h in hosts if not _covers(dns, ips, h)]
    if missing:
        add(Status.FAIL, "names", f"{', '.join(missing)} not covered by the SANs ({shown})")
    else:
        add(Status.PASS, "names", f"SANs: {shown}")


def _covers(dns: Sequence[str], ips: Sequence[object], host: Host) -> bool:
    if host.is_ip:
        return ipaddress.ip_address(host.text) in ips
    for name in dns:
        if name == host.text:
            return True
        if name.startswith("*.") and host.text.partition(".")[2] == name[2:]:
            return True
    return False


def _strength(members: list[x509.Certificate], anchor: x509.Certificate | None, add: _Add) -> None:
    problems = []
    for cert in members:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            problems.append(f"{subject(cert)} has an RSA key of {key.key_size} bits (under 2048)")
        if cert is anchor and len(members) > 1:
            continue  # a trust anchor's own signature is not checked by browsers
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            problems.append(f"{subject(cert)} is signed with an unsupported algorithm")
            continue
        if isinstance(algorithm, _WEAK_HASHES):
            problems.append(f"{subject(cert)} is signed with {algorithm.name.upper()}")
    for problem in problems:
        add(Status.FAIL, "strength", problem)
    if not problems:
        add(Status.PASS, "strength", "key sizes and signature hashes are strong enough")


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer and _issued_by(cert, cert)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:
        # cryptography no longer verifies SHA-1 certificate signatures; check it by hand, so
        # the chain is still followed and the weak hash gets its own FAIL
        return _legacy_signature_ok(cert, issuer)
    except (TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _legacy_signature_ok(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        algorithm = cert.signature_hash_algorithm
        key = issuer.public_key()
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


#: Debian's bundle of the system's trusted roots (ca-certificates).
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def system_anchors(bundle: Path = SYSTEM_BUNDLE) -> list[x509.Certificate]:
    """The system's trusted roots, or none when the bundle is missing or unreadable."""
    try:
        with warnings.catch_warnings():  # old roots there have serials RFC 5280 disallows
            warnings.simplefilter("ignore")
            return parse(bundle.read_bytes()).certificates
    except (OSError, ParseError):
        return []
