"""Checks of one component's files: key match, chain, identity, expiry.

Used before an install and by ``doctor``. Every check gives a :class:`Finding`; nothing
stops at the first problem.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certserver.clock import days_left
from certserver.errors import CertserverError
from certserver.extensions import extension_of
from certserver.identity import Ccid, Component, Identity
from certserver.inspection import is_self_signed, name_text
from certserver.keys import PrivateKey
from certserver.mtls import identity_of
from certserver.pem import ParseError, parse

WARN_DAYS = 30


class Status(enum.Enum):
    PASS = "PASS"  # noqa: S105 - a status, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.status.value} {self.check}: {self.message}"


@dataclass(frozen=True, slots=True)
class ComponentSet:
    """One component's files as bytes: leaf, key, anchors and (optionally) intermediates."""

    component: Component
    certificate: bytes
    key: bytes = field(repr=False)
    anchors: bytes
    intermediates: bytes | None = None


def check_set(
    files: ComponentSet, now: dt.datetime, *, expect_ccid: Ccid | None = None
) -> tuple[list[Finding], Identity | None]:
    """Every finding about ``files``, and the identity when the certificate carries one."""
    component = files.component
    findings: list[Finding] = []

    def add(status: Status, check: str, message: str) -> None:
        findings.append(Finding(status, f"{component.folder} {check}", message))

    leaf = _one_certificate(files.certificate)
    if leaf is None:
        add(Status.FAIL, "certificate", f"{component.cert_file} holds no single certificate")
        return findings, None
    key = _one_key(files.key)
    if key is None:
        add(Status.FAIL, "key", f"{component.key_file} holds no single unencrypted private key")
    elif _spki(key.public_key()) != _spki(leaf.public_key()):
        add(Status.FAIL, "key", f"{component.key_file} does not match {component.cert_file}")
    else:
        add(Status.PASS, "key", f"{component.key_file} matches {component.cert_file}")

    for name, data in _public_files(files):
        problem = _not_only_certificates(data)
        if problem:
            add(Status.FAIL, "files", f"{name} {problem}")
    add(*_chain(leaf, files, now))

    identity: Identity | None = None
    try:
        identity = identity_of(leaf)
    except CertserverError as exc:
        add(Status.FAIL, "identity", exc.message)
    else:
        if identity.component is not component:
            add(
                Status.FAIL, "identity", f"certificate is for {identity.component}, not {component}"
            )
        elif expect_ccid is not None and identity.ccid != expect_ccid:
            add(
                Status.FAIL,
                "identity",
                f"certificate is of deployment {identity.ccid}, expected {expect_ccid}",
            )
        else:
            add(Status.PASS, "identity", identity.spiffe_id)

    add(*_expiry(leaf, now))
    return findings, identity


def _chain(
    leaf: x509.Certificate, files: ComponentSet, now: dt.datetime
) -> tuple[Status, str, str]:
    anchors = _certificates(files.anchors)
    if not anchors:
        return Status.FAIL, "chain", f"{files.component.ca_file} holds no certificate"
    intermediates = _certificates(files.intermediates or b"")
    # expiry is its own check: verify the chain at a moment the leaf is valid
    moment = min(max(now, leaf.not_valid_before_utc), leaf.not_valid_after_utc)
    try:
        verifier = PolicyBuilder().store(Store(anchors)).time(moment).build_client_verifier()
        path = verifier.verify(leaf, intermediates).chain[1:]
    except (VerificationError, ValueError) as exc:
        return Status.FAIL, "chain", f"does not verify to {files.component.ca_file}: {exc}"
    missing = key_id_problems(leaf, path)
    if missing:
        return Status.FAIL, "chain", "; ".join(missing)
    return Status.PASS, "chain", f"verifies to {files.component.ca_file}"


def key_id_problems(leaf: x509.Certificate, path: Sequence[x509.Certificate]) -> list[str]:
    """What OpenSSL's strict verification (``VERIFY_X509_STRICT``, which certserver's mutual
    TLS uses) refuses in a chain that cryptography's verifier accepts: a CA without a
    subjectKeyIdentifier, a certificate below its root without an authorityKeyIdentifier."""
    problems = []
    for cert in (leaf, *path):
        subject = name_text(cert.subject) or "the leaf"
        if cert is not leaf and extension_of(cert, x509.SubjectKeyIdentifier) is None:
            problems.append(f"{subject} has no subjectKeyIdentifier (strict TLS refuses it)")
        if not is_self_signed(cert) and extension_of(cert, x509.AuthorityKeyIdentifier) is None:
            problems.append(f"{subject} has no authorityKeyIdentifier (strict TLS refuses it)")
    return problems


def _expiry(leaf: x509.Certificate, now: dt.datetime) -> tuple[Status, str, str]:
    not_after = leaf.not_valid_after_utc
    days = days_left(not_after, now)
    if now > not_after:
        return Status.FAIL, "expiry", f"expired {-days} days ago ({not_after:%Y-%m-%d})"
    if now < leaf.not_valid_before_utc:
        return Status.FAIL, "expiry", f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d}"
    if days < WARN_DAYS:
        return Status.WARN, "expiry", f"expires in {days} days ({not_after:%Y-%m-%d})"
    return Status.PASS, "expiry", f"{days} days left"


def _public_files(files: ComponentSet) -> list[tuple[str, bytes]]:
    component = files.component
    found = [(component.cert_file, files.certificate), (component.ca_file, files.anchors)]
    if files.intermediates is not None and component.chain_file:
        found.append((component.chain_file, files.intermediates))
    return found


def _not_only_certificates(data: bytes) -> str | None:
    """Why a file that should hold certificates only does not (a key there leaks it)."""
    try:
        parsed = parse(data)
    except ParseError as exc:
        return f"is damaged: {exc}"
    if parsed.private_keys or parsed.encrypted_keys:
        return "holds a private key, which must not be in a certificate file"
    if not parsed.certificates:
        return "holds no certificate"
    return None


def _certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return parse(data).certificates if data else []
    except ParseError:
        return []


def _one_certificate(data: bytes) -> x509.Certificate | None:
    certs = _certificates(data)
    return certs[0] if len(certs) == 1 else None


def _one_key(data: bytes) -> PrivateKey | None:
    try:
        parsed = parse(data)
    except ParseError:
        return None
    return parsed.private_keys[0] if len(parsed.private_keys) == 1 else None


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
