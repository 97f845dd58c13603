"""Between the three shapes of a deployment: material (in memory), records (the store), views.

Private keys cross here only sealed (into a record) or unsealed (into material).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certserver.authority import CertificateAuthority
from certserver.errors import StoreCorrupt
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName
from certserver.inspection import name_text
from certserver.keys import KeySpec, from_pkcs8_der
from certserver.masterkey import MasterKey
from certserver.package import ComponentMaterial, DeploymentMaterial, fingerprint, serial_hex
from certserver.store import AuthorityRecord, CertificateRecord, DeploymentRecord


@dataclass(frozen=True, slots=True)
class ComponentView:
    component: Component
    serial: str
    fingerprint_sha256: str
    hosts: tuple[Host, ...]
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class DeploymentView:
    name: DeploymentName
    ccid: Ccid
    organization: str
    key_spec: KeySpec
    created_at: dt.datetime
    package_version: int
    ca_subject: str
    ca_fingerprint_sha256: str
    ca_not_after: dt.datetime
    components: tuple[ComponentView, ...]


def seal_context(kind: str, ccid: Ccid, cert_fingerprint: str) -> bytes:
    """What a sealed key is bound to: its owner and its certificate."""
    return f"certserver:{kind}:{ccid}:{cert_fingerprint}".encode()


def to_record(
    material: DeploymentMaterial,
    ca_key_der: bytes,
    key_spec: KeySpec,
    hosts: Mapping[Component, Sequence[Host]],
    key: MasterKey,
) -> DeploymentRecord:
    """The store's rows for new material, every private key sealed under ``key``."""
    ca_cert = material.anchors[0]
    ccid = material.ccid
    ca_fingerprint = fingerprint(ca_cert)
    certificates = []
    for item in material.components:
        cert, cert_fingerprint = item.certificate, fingerprint(item.certificate)
        context = seal_context(item.component.folder, ccid, cert_fingerprint)
        certificates.append(
            CertificateRecord(
                component=item.component,
                cert_der=der(cert),
                key_sealed=key.seal(item.key_pkcs8_der, context),
                serial=serial_hex(cert),
                fingerprint=cert_fingerprint,
                hosts=tuple(hosts.get(item.component, ())),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
            )
        )
    return DeploymentRecord(
        name=material.name,
        ccid=ccid,
        organization=material.organization,
        key_spec=key_spec,
        package_version=material.package_version,
        created_at=material.created_at,
        authority=AuthorityRecord(
            cert_der=der(ca_cert),
            key_sealed=key.seal(ca_key_der, seal_context("ca", ccid, ca_fingerprint)),
            serial=serial_hex(ca_cert),
            fingerprint=ca_fingerprint,
            subject=name_text(ca_cert.subject),
            not_before=ca_cert.not_valid_before_utc,
            not_after=ca_cert.not_valid_after_utc,
        ),
        certificates=tuple(certificates),
    )


def to_material(record: DeploymentRecord, key: MasterKey, location: str) -> DeploymentMaterial:
    try:
        ca_cert = x509.load_der_x509_certificate(record.authority.cert_der)
        certs = [x509.load_der_x509_certificate(c.cert_der) for c in record.certificates]
    except ValueError:
        raise StoreCorrupt(
            f"{location}: store is corrupt (deployment {record.name}: a certificate does not parse)"
        ) from None
    components = []
    for cert_record, cert in zip(record.certificates, certs, strict=True):
        context = seal_context(cert_record.component.folder, record.ccid, fingerprint(cert))
        components.append(
            ComponentMaterial(
                cert_record.component, cert, key.unseal(cert_record.key_sealed, context)
            )
        )
    return DeploymentMaterial(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        created_at=record.created_at,
        anchors=(ca_cert,),
        intermediates=(),
        components=tuple(components),
        package_version=record.package_version,
    )


def to_view(record: DeploymentRecord) -> DeploymentView:
    return DeploymentView(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        key_spec=record.key_spec,
        created_at=record.created_at,
        package_version=record.package_version,
        ca_subject=record.authority.subject,
        ca_fingerprint_sha256=record.authority.fingerprint,
        ca_not_after=record.authority.not_after,
        components=tuple(
            ComponentView(
                component=cert.component,
                serial=cert.serial,
                fingerprint_sha256=cert.fingerprint,
                hosts=cert.hosts,
                not_before=cert.not_before,
                not_after=cert.not_after,
            )
            for cert in record.certificates
        ),
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def authority_of(record: DeploymentRecord, key: MasterKey, location: str) -> CertificateAuthority:
    """The deployment's CA with its private key unsealed (only for signing, in memory)."""
    try:
        cert = x509.load_der_x509_certificate(record.authority.cert_der)
    except ValueError:
        raise StoreCorrupt(
            f"{location}: store is corrupt (deployment {record.name}: its CA does not parse)"
        ) from None
    context = seal_context("ca", record.ccid, fingerprint(cert))
    ca_key = from_pkcs8_der(key.unseal(record.authority.key_sealed, context))
    return CertificateAuthority(ca_key, cert)
