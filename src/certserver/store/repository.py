"""The store: one class over SQLAlchemy Core, returning plain records (deployments here;
revocation and accounts in their own modules; the connection in ``core``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import (
    IntegrityError,
)

from certserver.accounts import Forbidden
from certserver.audit import AuditEntry
from certserver.errors import (
    DeploymentExists,
    DeploymentNotFound,
    InvalidInput,
)
from certserver.identity import Ccid, Component, DeploymentName
from certserver.keys import KeySpec
from certserver.profiles import CaMode
from certserver.store.account_rows import AccountRows

# records
from certserver.store.records import (
    _CA_ROLE,
    ACTIVE,
    AuthorityRecord,
    CertificateRecord,
    DeploymentQuery,
    DeploymentRecord,
    DeploymentState,
    DeploymentSummary,
    LinkRecord,
    PendingKeyRecord,
    Status,
    TrustKind,
    TrustRecord,
    _authority,
    _authority_row,
    _aware,
    _certificate,
    _certificate_row,
    _conditions,
    _filtered,
    _hosts_from_json,
    _hosts_json,
    _role,
)
from certserver.store.revocation_rows import RevocationRows
from certserver.store.tables import (
    authorities,
    certificates,
    deployments,
    links,
    pending_keys,
    trust_certificates,
)


class Store(RevocationRows, AccountRows):
    """Deployments, authorities and certificates in SQLite or PostgreSQL."""

    def deployment_exists(self, name: DeploymentName) -> bool:
        with self.reading() as connection:
            found = connection.scalar(
                sa.select(deployments.c.id).where(deployments.c.name == name.value)
            )
        return found is not None

    def add_deployment(self, connection: Connection, record: DeploymentRecord) -> None:
        """Insert a deployment with everything it holds on ``connection``."""
        try:
            deployment_key = connection.execute(
                sa.insert(deployments).values(
                    name=record.name.value,
                    ccid=record.ccid.value,
                    organization=record.organization,
                    key_type=record.key_spec.value,
                    package_version=record.package_version,
                    created_at=record.created_at,
                    ca_mode=record.ca_mode,
                    state=record.state,
                    validity_days=record.validity_days,
                    hosts=_hosts_json(record.hosts),
                )
            ).inserted_primary_key
        except IntegrityError:
            raise DeploymentExists(f"deployment {record.name} already exists") from None
        assert deployment_key is not None
        deployment_id = deployment_key[0]
        if record.pending:
            connection.execute(
                sa.insert(pending_keys),
                [
                    {
                        "deployment_id": deployment_id,
                        "role": _role(item.component),
                        "public_key_sha256": item.public_key_sha256,
                        "csr_der": item.csr_der,
                        "key_sealed": item.key_sealed,
                    }
                    for item in record.pending
                ],
            )
        self._add_signed(
            connection, deployment_id, record.authority, record.trust, record.certificates
        )

    def _add_signed(
        self,
        connection: Connection,
        deployment_id: object,
        authority: AuthorityRecord | None,
        trust: Sequence[TrustRecord],
        certs: Sequence[CertificateRecord],
    ) -> None:
        """Insert an authority, replace the trust rows, insert certificates (under that
        authority, or under none when an enterprise CA signed them)."""
        authority_id = None
        if authority is not None:
            authority_key = connection.execute(
                sa.insert(authorities).values(**_authority_row(deployment_id, authority))
            ).inserted_primary_key
            assert authority_key is not None
            authority_id = authority_key[0]
        if trust:
            connection.execute(
                sa.delete(trust_certificates).where(
                    trust_certificates.c.deployment_id == deployment_id
                )
            )
            connection.execute(
                sa.insert(trust_certificates),
                [
                    {
                        "deployment_id": deployment_id,
                        "kind": item.kind,
                        "position": position,
                        "fingerprint": item.fingerprint,
                        "cert_der": item.cert_der,
                    }
                    for position, item in enumerate(trust)
                ],
            )
        if certs:
            connection.execute(
                sa.insert(certificates),
                [_certificate_row(deployment_id, authority_id, cert) for cert in certs],
            )

    def import_signed(
        self,
        connection: Connection,
        name: DeploymentName,
        *,
        authority: AuthorityRecord | None,
        trust: Sequence[TrustRecord],
        certs: Sequence[CertificateRecord],
        resolved: Sequence[Component | None],
    ) -> DeploymentState:
        """Record on ``connection`` what an enterprise CA signed for a pending deployment:
        the ``resolved`` pending keys become ``certs`` (and ``authority``). The deployment is
        ready once no key is pending.
        """
        row = connection.execute(
            sa.select(deployments.c.id, deployments.c.state)
            .where(deployments.c.name == name.value)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise DeploymentNotFound(f"no deployment named {name}")
        if row.state != DeploymentState.PENDING:
            raise InvalidInput(f"deployment {name} has nothing pending to import")
        roles = [_role(component) for component in resolved]
        removed = connection.execute(
            sa.delete(pending_keys).where(
                pending_keys.c.deployment_id == row.id, pending_keys.c.role.in_(roles)
            )
        ).rowcount
        if removed != len(roles):
            raise InvalidInput(f"deployment {name} changed meanwhile; run the import again")
        self._add_signed(connection, row.id, authority, trust, certs)
        left = connection.scalar(
            sa.select(sa.func.count())
            .select_from(pending_keys)
            .where(pending_keys.c.deployment_id == row.id)
        )
        state = DeploymentState.PENDING if left else DeploymentState.READY
        connection.execute(
            sa.update(deployments).where(deployments.c.id == row.id).values(state=state)
        )
        return state

    def add_issued(
        self,
        name: DeploymentName,
        record: CertificateRecord,
        audit: AuditEntry | None = None,
        supersedes: str | None = None,
    ) -> None:
        """Record a certificate the deployment's CA signed for a key it never saw (and
        ``audit``, the entry that says so, in the same transaction). ``supersedes``: the
        fingerprint of the certificate it replaces (self-renewal), which must still be
        current and is no longer after this."""
        with self.transaction() as connection:
            if supersedes is not None:
                replaced = connection.execute(
                    sa.update(certificates)
                    .where(
                        certificates.c.fingerprint == supersedes,
                        certificates.c.status.in_([ACTIVE, Status.ISSUED]),
                    )
                    .values(status=Status.SUPERSEDED)
                ).rowcount
                if replaced != 1:
                    raise Forbidden("this certificate was renewed or revoked meanwhile")
            row = connection.execute(
                sa.select(deployments.c.id, authorities.c.id.label("authority_id"))
                .select_from(deployments)
                .outerjoin(
                    authorities,
                    sa.and_(
                        authorities.c.deployment_id == deployments.c.id,
                        authorities.c.status == ACTIVE,
                    ),
                )
                .where(deployments.c.name == name.value)
            ).one_or_none()
            if row is None:
                raise DeploymentNotFound(f"no deployment named {name}")
            if row.authority_id is None:
                raise InvalidInput(f"deployment {name} has no CA of certserver's to sign with")
            values = _certificate_row(row.id, row.authority_id, record)
            values.update(key_sealed=None, status=Status.ISSUED)  # the key is not ours to keep
            connection.execute(sa.insert(certificates).values(**values))
            if audit is not None:
                self.add_audit(audit, connection)

    def get_deployment(self, name: DeploymentName) -> DeploymentRecord:
        with self._decoding(f"deployment {name}"):
            return self._get_deployment(name)

    def signing_record(self, name: DeploymentName, component: Component) -> DeploymentRecord:
        """What signing a CSR for ``component`` reads: the deployment with its active
        authority and only that component's active certificate; no trust rows, pending keys
        or links (unless it has no authority: then all of it, for the error to say why)."""
        with self._decoding(f"deployment {name}"):
            record = self._get_deployment(name, only=component)
        return record if record.authority is not None else self.get_deployment(name)

    def _get_deployment(
        self, name: DeploymentName, only: Component | None = None
    ) -> DeploymentRecord:
        with self.reading() as connection:
            row = connection.execute(
                sa.select(deployments).where(deployments.c.name == name.value)
            ).one_or_none()
            if row is None:
                raise DeploymentNotFound(f"no deployment named {name}")
            ca = connection.execute(
                sa.select(authorities).where(
                    authorities.c.deployment_id == row.id, authorities.c.status == ACTIVE
                )
            ).one_or_none()
            retiring = connection.execute(
                sa.select(authorities).where(
                    authorities.c.deployment_id == row.id,
                    authorities.c.status == Status.RETIRING,
                )
            ).one_or_none()
            mine = sa.select(certificates).where(
                certificates.c.deployment_id == row.id, certificates.c.status == ACTIVE
            )
            if only is not None:
                mine = mine.where(certificates.c.component == only.folder)
            certs = connection.execute(mine.order_by(certificates.c.id)).all()
            trust: Sequence[sa.Row[tuple[object, ...]]] = ()
            pending: Sequence[sa.Row[tuple[object, ...]]] = ()
            linked: Sequence[sa.Row[tuple[object, ...]]] = ()
            if only is None:
                trust = connection.execute(
                    sa.select(trust_certificates)
                    .where(trust_certificates.c.deployment_id == row.id)
                    .order_by(trust_certificates.c.kind, trust_certificates.c.position)
                ).all()
                pending = connection.execute(
                    sa.select(pending_keys)
                    .where(pending_keys.c.deployment_id == row.id)
                    .order_by(pending_keys.c.id)
                ).all()
                linked = connection.execute(
                    sa.select(links).where(links.c.deployment_id == row.id).order_by(links.c.ccid)
                ).all()
        return DeploymentRecord(
            name=DeploymentName(row.name),
            ccid=Ccid(row.ccid),
            organization=row.organization,
            key_spec=KeySpec(row.key_type),
            package_version=row.package_version,
            created_at=row.created_at,
            authority=None if ca is None else _authority(ca),
            retiring=None if retiring is None else _authority(retiring),
            certificates=tuple(_certificate(cert) for cert in certs),
            ca_mode=CaMode(row.ca_mode),
            state=DeploymentState(row.state),
            validity_days=row.validity_days,
            hosts=_hosts_from_json(row.hosts),
            trust=tuple(TrustRecord(TrustKind(t.kind), t.cert_der, t.fingerprint) for t in trust),
            pending=tuple(
                PendingKeyRecord(
                    component=None if p.role == _CA_ROLE else Component.from_folder(p.role),
                    public_key_sha256=p.public_key_sha256,
                    csr_der=p.csr_der,
                    key_sealed=p.key_sealed,
                )
                for p in pending
            ),
            links=tuple(
                LinkRecord(
                    ccid=Ccid(link.ccid),
                    name=DeploymentName(link.name),
                    bundle_pem=link.bundle_pem,
                    components=tuple(Component.from_folder(c) for c in json.loads(link.components)),
                    created_at=link.created_at,
                )
                for link in linked
            ),
        )

    def put_link(self, name: DeploymentName, link: LinkRecord) -> bool:
        """Add (or replace) a link of deployment ``name``; True when it replaced one. The
        package version goes up: the next package differs."""
        with self.transaction() as connection:
            deployment_id = self._bump(connection, name)
            removed = connection.execute(
                sa.delete(links).where(
                    links.c.deployment_id == deployment_id, links.c.ccid == link.ccid.value
                )
            ).rowcount
            connection.execute(
                sa.insert(links).values(
                    deployment_id=deployment_id,
                    ccid=link.ccid.value,
                    name=link.name.value,
                    bundle_pem=link.bundle_pem,
                    components=json.dumps([c.folder for c in link.components]),
                    created_at=link.created_at,
                )
            )
        return bool(removed)

    def remove_link(self, name: DeploymentName, linked: str) -> LinkRecord | None:
        """Remove the link to ``linked`` (a deployment name or CCID); the removed link."""
        record = self.get_deployment(name)
        found = next(
            (link for link in record.links if linked in (link.ccid.value, link.name.value)), None
        )
        if found is None:
            return None
        with self.transaction() as connection:
            deployment_id = self._bump(connection, name)
            connection.execute(
                sa.delete(links).where(
                    links.c.deployment_id == deployment_id, links.c.ccid == found.ccid.value
                )
            )
        return found

    def _bump(self, connection: Connection, name: DeploymentName) -> object:
        row = connection.execute(
            sa.select(deployments.c.id).where(deployments.c.name == name.value)
        ).one_or_none()
        if row is None:
            raise DeploymentNotFound(f"no deployment named {name}")
        connection.execute(
            sa.update(deployments)
            .where(deployments.c.id == row.id)
            .values(package_version=deployments.c.package_version + 1)
        )
        return row.id

    def list_deployments(self, query: DeploymentQuery | None = None) -> Sequence[DeploymentSummary]:
        with self._decoding("deployments"):
            return self._list_deployments(query or DeploymentQuery())

    def count_deployments(self, query: DeploymentQuery | None = None) -> int:
        with self.transaction() as connection:
            count = sa.select(sa.func.count()).select_from(deployments)
            return int(connection.scalar(_filtered(count, query or DeploymentQuery())) or 0)

    def _list_deployments(self, query: DeploymentQuery) -> Sequence[DeploymentSummary]:
        expiry = (
            sa.select(sa.func.min(certificates.c.not_after))
            .where(
                certificates.c.deployment_id == deployments.c.id,
                certificates.c.status == ACTIVE,
            )
            .scalar_subquery()
        )
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(
                    deployments.c.name,
                    deployments.c.ccid,
                    deployments.c.key_type,
                    deployments.c.created_at,
                    deployments.c.ca_mode,
                    deployments.c.state,
                    expiry.label("next_expiry"),
                )
                .where(*_conditions(query))
                .order_by(deployments.c.name)
                .limit(query.limit)
                .offset(query.offset)
            ).all()
        return [
            DeploymentSummary(
                name=DeploymentName(row.name),
                ccid=Ccid(row.ccid),
                key_spec=KeySpec(row.key_type),
                created_at=row.created_at,
                next_expiry=_aware(row.next_expiry),
                ca_mode=CaMode(row.ca_mode),
                state=DeploymentState(row.state),
            )
            for row in rows
        ]

    def rotate_authority(
        self, connection: Connection, name: DeploymentName, new: AuthorityRecord
    ) -> int:
        """On ``connection``: the active authority becomes retiring and ``new`` the active
        one; the package version goes up (returned)."""
        row = self._locked_deployment(connection, name)
        if connection.scalar(
            sa.select(sa.func.count())
            .select_from(authorities)
            .where(authorities.c.deployment_id == row.id, authorities.c.status == Status.RETIRING)
        ):
            raise InvalidInput(
                f"deployment {name} is rotating its CA already: finish that first "
                f"(certserver ca finish-rotation {name})"
            )
        connection.execute(
            sa.update(authorities)
            .where(authorities.c.deployment_id == row.id, authorities.c.status == ACTIVE)
            .values(status=Status.RETIRING)
        )
        connection.execute(
            sa.insert(authorities).values(**_authority_row(row.id, new, status=ACTIVE))
        )
        return self._bump_version(connection, row)

    def finish_rotation(self, connection: Connection, name: DeploymentName) -> int:
        """The retiring authority is retired (no longer trusted), once no active certificate
        comes from it; the package version goes up (returned)."""
        row = self._locked_deployment(connection, name)
        retiring = connection.scalar(
            sa.select(authorities.c.id).where(
                authorities.c.deployment_id == row.id, authorities.c.status == Status.RETIRING
            )
        )
        if retiring is None:
            raise InvalidInput(f"deployment {name} is not rotating its CA")
        left = connection.execute(
            sa.select(certificates.c.component).where(
                certificates.c.authority_id == retiring,
                certificates.c.status.in_([ACTIVE, Status.ISSUED]),
            )
        ).all()
        if left:
            names = ", ".join(sorted({r.component for r in left}))
            raise InvalidInput(
                f"certificates of the old CA are still in use ({names}): renew them first "
                f"(certserver renew {name})"
            )
        connection.execute(
            sa.update(authorities).where(authorities.c.id == retiring).values(status=Status.RETIRED)
        )
        return self._bump_version(connection, row)

    def replace_certificates(
        self, connection: Connection, name: DeploymentName, new: Sequence[CertificateRecord]
    ) -> int:
        """On ``connection``: the active certificates of ``new``'s components become
        superseded, ``new`` takes their place, and the package version goes up (returned)."""
        row = self._locked_deployment(connection, name)
        authority_id = connection.scalar(
            sa.select(authorities.c.id).where(
                authorities.c.deployment_id == row.id, authorities.c.status == ACTIVE
            )
        )
        connection.execute(
            sa.update(certificates)
            .where(
                certificates.c.deployment_id == row.id,
                certificates.c.status == ACTIVE,
                certificates.c.component.in_([cert.component.folder for cert in new]),
            )
            .values(status=Status.SUPERSEDED)
        )
        connection.execute(
            sa.insert(certificates), [_certificate_row(row.id, authority_id, c) for c in new]
        )
        return self._bump_version(connection, row)

    # -- revocation -------------------------------------------------------------------------
