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
from certserver.errors import CertserverError, InvalidInput, StoreCorrupt
from certserver.extensions import extension_of
from certserver.federation import Link, TrustBundle
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName
from certserver.inspection import name_text
from certserver.keys import KeySpec, PrivateKey, from_pkcs8_der, public_key_sha256, to_pkcs8_der
from certserver.masterkey import MasterKey
from certserver.mtls import authority_key_id
from certserver.package import ComponentMaterial, DeploymentMaterial, fingerprint, serial_hex
from certserver.profiles import CaMode
from certserver.store import (
    AuthorityRecord,
    CertificateRecord,
    DeploymentRecord,
    DeploymentState,
    PendingKeyRecord,
    TrustKind,
    TrustRecord,
)


@dataclass(frozen=True, slots=True)
class ComponentView:
    component: Component
    serial: str
    fingerprint_sha256: str
    hosts: tuple[Host, ...]
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class LinkView:
    deployment: DeploymentName
    ccid: Ccid
    components: tuple[Component, ...]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DeploymentView:
    name: DeploymentName
    ccid: Ccid
    organization: str
    key_spec: KeySpec
    created_at: dt.datetime
    package_version: int
    #: The CA that signs the components: certserver's, or the enterprise's issuing CA;
    #: None while an enterprise has yet to sign.
    ca_subject: str | None
    ca_fingerprint_sha256: str | None
    ca_not_after: dt.datetime | None
    components: tuple[ComponentView, ...]
    ca_mode: CaMode = CaMode.CERTSERVER
    state: DeploymentState = DeploymentState.READY
    #: What an enterprise CA has yet to sign: components, and None for the deployment CA.
    pending: tuple[Component | None, ...] = ()
    links: tuple[LinkView, ...] = ()


def seal_context(kind: str, ccid: Ccid, cert_fingerprint: str) -> bytes:
    """What a sealed key is bound to: its owner and its certificate."""
    return f"certserver:{kind}:{ccid}:{cert_fingerprint}".encode()


def to_record(
    material: DeploymentMaterial,
    ca_key_der: bytes | None,
    key_spec: KeySpec,
    plan: Plan,
    key: MasterKey,
) -> DeploymentRecord:
    """The store's rows for new material, every private key sealed under ``key``.

    ``ca_key_der`` is the key of certserver's deployment CA (None when an enterprise CA
    signed the components).
    """
    authority = None
    if ca_key_der is not None:
        authority = authority_record(_issuer(material), ca_key_der, material.ccid, key)
    return DeploymentRecord(
        name=material.name,
        ccid=material.ccid,
        organization=material.organization,
        key_spec=key_spec,
        package_version=material.package_version,
        created_at=material.created_at,
        authority=authority,
        certificates=tuple(
            certificate_record(item, plan.hosts, material.ccid, key) for item in material.components
        ),
        ca_mode=plan.ca_mode,
        validity_days=plan.validity_days,
        hosts=plan.hosts_tuple(),
        trust=trust_records(material, plan.ca_mode),
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """What a deployment is made with, kept so that a pending one can be finished later."""

    ca_mode: CaMode
    validity_days: int
    hosts: Mapping[Component, Sequence[Host]]

    def hosts_tuple(self) -> dict[Component, tuple[Host, ...]]:
        return {component: tuple(names) for component, names in self.hosts.items()}

    @classmethod
    def of(cls, record: DeploymentRecord) -> Plan:
        return cls(record.ca_mode, record.validity_days or 0, record.hosts)


def pending_record(
    name: DeploymentName,
    ccid: Ccid,
    organization: str,
    key_spec: KeySpec,
    created_at: dt.datetime,
    plan: Plan,
    requests: Sequence[tuple[Component | None, x509.CertificateSigningRequest, PrivateKey]],
    key: MasterKey,
) -> DeploymentRecord:
    """A deployment waiting for an enterprise CA: its keys sealed, with their CSRs."""
    pending = []
    for component, csr, private_key in requests:
        public = public_key_sha256(private_key.public_key())
        context = pending_context(component, ccid, public)
        pending.append(
            PendingKeyRecord(
                component=component,
                public_key_sha256=public,
                csr_der=csr.public_bytes(Encoding.DER),
                key_sealed=key.seal(to_pkcs8_der(private_key), context),
            )
        )
    return DeploymentRecord(
        name=name,
        ccid=ccid,
        organization=organization,
        key_spec=key_spec,
        package_version=1,
        created_at=created_at,
        authority=None,
        certificates=(),
        ca_mode=plan.ca_mode,
        state=DeploymentState.PENDING,
        validity_days=plan.validity_days,
        hosts=plan.hosts_tuple(),
        pending=tuple(pending),
    )


def pending_context(component: Component | None, ccid: Ccid, public_key_sha256: str) -> bytes:
    """What a pending key is sealed to: its role and its public key (it has no certificate)."""
    role = "ca" if component is None else component.folder
    return seal_context(f"pending-{role}", ccid, public_key_sha256)


def unseal_pending(item: PendingKeyRecord, ccid: Ccid, key: MasterKey) -> PrivateKey:
    context = pending_context(item.component, ccid, item.public_key_sha256)
    return from_pkcs8_der(key.unseal(item.key_sealed, context), unsealed=True)


def authority_record(
    cert: x509.Certificate, ca_key_der: bytes, ccid: Ccid, key: MasterKey
) -> AuthorityRecord:
    ca_fingerprint = fingerprint(cert)
    return AuthorityRecord(
        cert_der=der(cert),
        key_sealed=key.seal(ca_key_der, seal_context("ca", ccid, ca_fingerprint)),
        serial=serial_hex(cert),
        fingerprint=ca_fingerprint,
        subject=name_text(cert.subject),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def certificate_record(
    item: ComponentMaterial,
    hosts: Mapping[Component, Sequence[Host]],
    ccid: Ccid,
    key: MasterKey,
) -> CertificateRecord:
    cert, cert_fingerprint = item.certificate, fingerprint(item.certificate)
    context = seal_context(item.component.folder, ccid, cert_fingerprint)
    return CertificateRecord(
        component=item.component,
        cert_der=der(cert),
        key_sealed=key.seal(item.key_pkcs8_der, context),
        serial=serial_hex(cert),
        fingerprint=cert_fingerprint,
        hosts=tuple(hosts.get(item.component, ())),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def trust_records(material: DeploymentMaterial, ca_mode: CaMode) -> tuple[TrustRecord, ...]:
    """The enterprise's certificates of a package (none for certserver's own CA)."""
    if ca_mode is CaMode.CERTSERVER:
        return ()
    intermediates = list(material.intermediates)
    if ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
        intermediates = intermediates[1:]  # the first is the deployment CA: an authority row
    return tuple(
        TrustRecord(kind, der(cert), fingerprint(cert))
        for kind, certs in (
            (TrustKind.ANCHOR, material.anchors),
            (TrustKind.INTERMEDIATE, intermediates),
        )
        for cert in certs
    )


def _issuer(material: DeploymentMaterial) -> x509.Certificate:
    """certserver's deployment CA in ``material``: the anchor, or the first intermediate."""
    return material.intermediates[0] if material.intermediates else material.anchors[0]


def to_material(record: DeploymentRecord, key: MasterKey, location: str) -> DeploymentMaterial:
    if record.state is DeploymentState.PENDING:
        raise InvalidInput(f"deployment {record.name} is {_waiting(record)}")
    anchors, intermediates = chain_of(record, location)
    try:
        certs = [_load(c.cert_der) for c in record.certificates]
    except ValueError:
        raise _corrupt(record, location) from None
    components = unseal_components(record, certs, key)
    return DeploymentMaterial(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        created_at=record.created_at,
        anchors=anchors,
        intermediates=intermediates,
        components=tuple(components),
        package_version=record.package_version,
        ca_mode=record.ca_mode,
        links=links_of(record, location),
    )


def links_of(record: DeploymentRecord, location: str) -> tuple[Link, ...]:
    try:
        return tuple(
            Link(TrustBundle.read(link.bundle_pem, "link"), frozenset(link.components))
            for link in record.links
        )
    except CertserverError:
        raise StoreCorrupt(
            f"{location}: store is corrupt (deployment {record.name}: a link does not parse)"
        ) from None


def chain_of(
    record: DeploymentRecord, location: str
) -> tuple[tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]:
    """A ready deployment's trust anchors and intermediates (issuer first), as packaged."""
    try:
        authority = () if record.authority is None else (_load(record.authority.cert_der),)
        anchors = tuple(_load(t.cert_der) for t in record.anchors())
        intermediates = tuple(_load(t.cert_der) for t in record.intermediates())
    except ValueError:
        raise _corrupt(record, location) from None
    if record.ca_mode is CaMode.CERTSERVER:
        anchors, intermediates = authority, ()
        if record.retiring is not None:  # a CA rotation: both trusted until it is finished
            try:
                anchors = (*authority, _load(record.retiring.cert_der))
            except ValueError:
                raise _corrupt(record, location) from None
    elif record.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
        intermediates = (*authority, *intermediates)
    if not anchors:
        raise StoreCorrupt(f"{location}: store is corrupt (deployment {record.name}: no CA)")
    return anchors, intermediates


def _corrupt(record: DeploymentRecord, location: str) -> StoreCorrupt:
    return StoreCorrupt(
        f"{location}: store is corrupt (deployment {record.name}: a certificate does not parse)"
    )


def unseal_components(
    record: DeploymentRecord, certs: Sequence[x509.Certificate], key: MasterKey
) -> list[ComponentMaterial]:
    """The components' certificates (``certs``, parsed from ``record``) with their keys."""
    components = []
    for cert_record, cert in zip(record.certificates, certs, strict=True):
        context = seal_context(cert_record.component.folder, record.ccid, fingerprint(cert))
        components.append(
            ComponentMaterial(
                cert_record.component, cert, key.unseal(cert_record.key_sealed, context)
            )
        )
    return components


def _load(data: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(data)


def _waiting(record: DeploymentRecord) -> str:
    """What a pending deployment waits for, and the command that ends the wait."""
    if record.ca_mode is CaMode.ENTERPRISE_INTERMEDIATE:
        return (
            "waiting for its enterprise-signed CA certificate "
            f"(certserver deployment import-ca {record.name} --cert FILE --chain FILE)"
        )
    missing = ", ".join(p.component.folder for p in record.pending if p.component is not None)
    return (
        f"waiting for enterprise-signed certificates for {missing} "
        f"(certserver deployment import-signed {record.name} FILE... --chain FILE)"
    )


def to_view(record: DeploymentRecord) -> DeploymentView:
    issuer = _issuer_view(record)
    return DeploymentView(
        name=record.name,
        ccid=record.ccid,
        organization=record.organization,
        key_spec=record.key_spec,
        created_at=record.created_at,
        package_version=record.package_version,
        ca_subject=issuer[0] if issuer else None,
        ca_fingerprint_sha256=issuer[1] if issuer else None,
        ca_not_after=issuer[2] if issuer else None,
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
        ca_mode=record.ca_mode,
        state=record.state,
        pending=tuple(item.component for item in record.pending),
        links=tuple(
            LinkView(link.name, link.ccid, link.components, link.created_at)
            for link in record.links
        ),
    )


def _issuer_view(record: DeploymentRecord) -> tuple[str, str, dt.datetime] | None:
    """Subject, fingerprint and end of the CA that signs the components."""
    if record.authority is not None:
        ca = record.authority
        return ca.subject, ca.fingerprint, ca.not_after
    if not record.certificates or not record.trust:
        return None
    try:
        leaf = _load(record.certificates[0].cert_der)
        certs = [_load(t.cert_der) for t in record.trust]
    except ValueError:
        return None
    aki = authority_key_id(leaf)
    issuer = next(
        (c for c in certs if aki is not None and _ski(c) == aki),
        next((c for c in certs if c.subject == leaf.issuer), None),
    )
    if issuer is None:
        return None
    return name_text(issuer.subject), fingerprint(issuer), issuer.not_valid_after_utc


def _ski(cert: x509.Certificate) -> bytes | None:
    found = extension_of(cert, x509.SubjectKeyIdentifier)
    return None if found is None else found.digest


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def authority_of(record: DeploymentRecord, key: MasterKey, location: str) -> CertificateAuthority:
    """The deployment's CA with its private key unsealed (only for signing, in memory)."""
    if record.authority is None:
        if record.ca_mode is not CaMode.ENTERPRISE_LEAF:
            raise InvalidInput(f"deployment {record.name} is {_waiting(record)}")
        raise InvalidInput(
            f"deployment {record.name}'s certificates are signed by an enterprise CA; "
            "certserver holds no CA key for it"
        )
    return unseal_authority(record, record.authority, key, location)


def unseal_authority(
    record: DeploymentRecord, authority: AuthorityRecord, key: MasterKey, location: str
) -> CertificateAuthority:
    """One of the deployment's CAs (the active or the retiring one), its key unsealed."""
    try:
        cert = x509.load_der_x509_certificate(authority.cert_der)
    except ValueError:
        raise StoreCorrupt(
            f"{location}: store is corrupt (deployment {record.name}: its CA does not parse)"
        ) from None
    context = seal_context("ca", record.ccid, fingerprint(cert))
    ca_key = from_pkcs8_der(key.unseal(authority.key_sealed, context), unsealed=True)
    return CertificateAuthority(ca_key, cert)
