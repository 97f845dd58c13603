"""The store's records (plain values the repository returns) and how rows become them."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from certserver.accounts import Credential, CredentialKind, Role
from certserver.audit import AuditEntry
from certserver.hosts import Host
from certserver.identity import Ccid, Component, DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import CaMode
from certserver.store.tables import (
    deployments,
)


class Status(enum.StrEnum):
    """Where a certificate (or an authority) stands; stored as its value."""

    ACTIVE = "active"  # in the deployment's package
    ISSUED = "issued"  # signed for a key held elsewhere (sign-csr); not in the package
    REVOKED = "revoked"  # listed in its authority's CRL
    SUPERSEDED = "superseded"  # renewed: a newer certificate of the same identity replaced it
    RETIRING = "retiring"  # an authority being rotated out: still trusted, no longer signing
    RETIRED = "retired"  # an authority rotated out: no longer trusted


class DeploymentState(enum.StrEnum):
    READY = "ready"  # its package can be made
    PENDING = "pending"  # waiting for certificates an enterprise CA signs


class TrustKind(enum.StrEnum):
    ANCHOR = "anchor"
    INTERMEDIATE = "intermediate"


ACTIVE = Status.ACTIVE
_CA_ROLE = "ca"


@dataclass(frozen=True, slots=True)
class AuthorityRecord:
    cert_der: bytes
    key_sealed: bytes
    serial: str
    fingerprint: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status = ACTIVE


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    component: Component
    cert_der: bytes
    key_sealed: bytes
    serial: str
    fingerprint: str
    hosts: tuple[Host, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    status: Status = ACTIVE


@dataclass(frozen=True, slots=True)
class PendingKeyRecord:
    """A key certserver made, and its CSR, waiting for an enterprise CA's certificate."""

    component: Component | None  # None: the deployment CA's key
    public_key_sha256: str
    csr_der: bytes
    key_sealed: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TrustRecord:
    """One of an enterprise's certificates a deployment's chain goes through."""

    kind: TrustKind
    cert_der: bytes
    fingerprint: str


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """Components of a deployment that accept a linked deployment (by its trust bundle)."""

    ccid: Ccid
    name: DeploymentName
    bundle_pem: bytes
    components: tuple[Component, ...]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    name: DeploymentName
    ccid: Ccid
    organization: str
    key_spec: KeySpec
    package_version: int
    created_at: dt.datetime
    #: The deployment CA certserver holds the key of (None: pending, or enterprise-leaf).
    authority: AuthorityRecord | None
    certificates: tuple[CertificateRecord, ...]
    ca_mode: CaMode = CaMode.CERTSERVER
    state: DeploymentState = DeploymentState.READY
    validity_days: int | None = None
    hosts: Mapping[Component, tuple[Host, ...]] = field(default_factory=dict)
    trust: tuple[TrustRecord, ...] = ()
    pending: tuple[PendingKeyRecord, ...] = ()
    links: tuple[LinkRecord, ...] = ()
    #: The CA being rotated out: still trusted, no longer signing (``ca rotate``).
    retiring: AuthorityRecord | None = None

    def anchors(self) -> tuple[TrustRecord, ...]:
        return tuple(t for t in self.trust if t.kind is TrustKind.ANCHOR)

    def intermediates(self) -> tuple[TrustRecord, ...]:
        return tuple(t for t in self.trust if t.kind is TrustKind.INTERMEDIATE)


@dataclass(frozen=True, slots=True)
class DeploymentQuery:
    """Which deployments to list: filters, and a page (in name order)."""

    state: DeploymentState | None = None
    ca_mode: CaMode | None = None
    name_prefix: str | None = None
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class DeploymentSummary:
    name: DeploymentName
    ccid: Ccid
    key_spec: KeySpec
    created_at: dt.datetime
    next_expiry: dt.datetime | None
    ca_mode: CaMode = CaMode.CERTSERVER
    state: DeploymentState = DeploymentState.READY


def _audit_row(entry: AuditEntry) -> dict[str, object]:
    return {
        "at": entry.at,
        "actor": entry.actor[:128],
        "action": entry.action[:64],
        "target": entry.target[:128],
        "source": entry.source[:64],
        "result": entry.result[:64],
        "detail": entry.detail[:2000],
    }


def _certificate_row(
    deployment_id: object, authority_id: object, cert: CertificateRecord
) -> dict[str, object]:
    return {
        "deployment_id": deployment_id,
        "authority_id": authority_id,
        "component": cert.component.folder,
        "serial": cert.serial,
        "fingerprint": cert.fingerprint,
        "hosts": json.dumps([host.text for host in cert.hosts]),
        "cert_der": cert.cert_der,
        "key_sealed": cert.key_sealed,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
        "status": cert.status,
    }


def _conditions(query: DeploymentQuery) -> list[sa.ColumnElement[bool]]:
    found: list[sa.ColumnElement[bool]] = []
    if query.state is not None:
        found.append(deployments.c.state == query.state)
    if query.ca_mode is not None:
        found.append(deployments.c.ca_mode == query.ca_mode)
    if query.name_prefix:
        escaped = query.name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found.append(deployments.c.name.like(f"{escaped}%", escape="\\"))
    return found


def _filtered(select: Any, query: DeploymentQuery) -> Any:
    return select.where(*_conditions(query))


def _authority_row(
    deployment_id: object, authority: AuthorityRecord, *, status: Status | None = None
) -> dict[str, object]:
    return {
        "deployment_id": deployment_id,
        "serial": authority.serial,
        "fingerprint": authority.fingerprint,
        "subject": authority.subject,
        "cert_der": authority.cert_der,
        "key_sealed": authority.key_sealed,
        "not_before": authority.not_before,
        "not_after": authority.not_after,
        "status": status or authority.status,
    }


def _credential(row: sa.Row[tuple[object, ...]]) -> Credential:
    m = row._mapping
    return Credential(
        credential_id=m["credential_id"],
        kind=CredentialKind(m["kind"]),
        name=m["name"],
        role=Role(m["role"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
    )


def _role(component: Component | None) -> str:
    return _CA_ROLE if component is None else component.folder


def _hosts_json(hosts: Mapping[Component, Sequence[Host]]) -> str:
    return json.dumps({c.folder: [h.text for h in names] for c, names in hosts.items()})


def _hosts_from_json(text: str | None) -> dict[Component, tuple[Host, ...]]:
    if not text:
        return {}
    return {
        Component.from_folder(folder): tuple(Host.parse(name) for name in names)
        for folder, names in json.loads(text).items()
    }


def _authority(ca: sa.Row[tuple[object, ...]]) -> AuthorityRecord:
    m = ca._mapping
    return AuthorityRecord(
        cert_der=m["cert_der"],
        key_sealed=m["key_sealed"],
        serial=m["serial"],
        fingerprint=m["fingerprint"],
        subject=m["subject"],
        not_before=m["not_before"],
        not_after=m["not_after"],
        status=Status(m["status"]),
    )


def _certificate(row: sa.Row[tuple[object, ...]]) -> CertificateRecord:
    m = row._mapping
    return CertificateRecord(
        component=Component.from_folder(m["component"]),
        cert_der=m["cert_der"],
        key_sealed=m["key_sealed"],
        serial=m["serial"],
        fingerprint=m["fingerprint"],
        hosts=tuple(Host.parse(text) for text in json.loads(m["hosts"])),
        not_before=m["not_before"],
        not_after=m["not_after"],
        status=Status(m["status"]),
    )


def _aware(value: object) -> dt.datetime | None:
    """Aggregates bypass the column type; SQLite returns them as naive text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
