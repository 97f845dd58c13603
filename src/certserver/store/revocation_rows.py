"""The store's revocations and CRLs, and certificates looked up for OCSP and renewal."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import Connection

from certserver.errors import (
    InvalidInput,
)
from certserver.identity import Component, DeploymentName
from certserver.store.core import StoreCore

# records
from certserver.store.records import (
    ACTIVE,
    CertificateRecord,
    Status,
    _certificate,
)
from certserver.store.tables import (
    authorities,
    certificates,
    crls,
    deployments,
    pending_keys,
    revocations,
)


class RevocationRows(StoreCore):
    def revoke(
        self,
        connection: Connection,
        name: DeploymentName,
        *,
        serial: str | None,
        component: Component | None,
        reason: str,
        at: dt.datetime,
    ) -> tuple[list[str], list[str]]:
        """Revoke, on ``connection``: the certificate of deployment ``name`` with ``serial``,
        or every current certificate (packaged, or issued for a key held elsewhere) of
        ``component``, from the deployment's CA or the one being rotated out. Returns the
        revoked serials and the fingerprints of the authorities whose CRL changes."""
        row = self._locked_deployment(connection, name)
        ours = [
            (r.id, r.fingerprint)
            for r in connection.execute(
                sa.select(authorities.c.id, authorities.c.fingerprint).where(
                    authorities.c.deployment_id == row.id,
                    authorities.c.status.in_([ACTIVE, Status.RETIRING]),
                )
            )
        ]
        if not ours:
            raise InvalidInput(
                f"deployment {name} has no CA of certserver's: revoke its certificates at the "
                "enterprise CA that signed them"
            )
        ids = [authority_id for authority_id, _ in ours]
        query = sa.select(
            certificates.c.id,
            certificates.c.serial,
            certificates.c.status,
            certificates.c.authority_id,
        ).where(certificates.c.authority_id.in_(ids))
        if serial is not None:
            query = query.where(certificates.c.serial == serial.lower().lstrip("0"))
        else:
            assert component is not None
            query = query.where(
                certificates.c.component == component.folder,
                certificates.c.status.in_([ACTIVE, Status.ISSUED]),
            )
        found = connection.execute(query).all()
        if not found:
            if serial is not None:
                raise InvalidInput(f"deployment {name} has no certificate with serial {serial}")
            raise InvalidInput(
                f"{component} of deployment {name} has no current certificate (already revoked?)"
            )
        if all(cert.status == Status.REVOKED for cert in found):
            raise InvalidInput(f"certificate {found[0].serial} of {name} is already revoked")
        todo = [cert for cert in found if cert.status != Status.REVOKED]
        connection.execute(
            sa.update(certificates)
            .where(certificates.c.id.in_([cert.id for cert in todo]))
            .values(status=Status.REVOKED)
        )
        connection.execute(
            sa.insert(revocations),
            [
                {
                    "authority_id": cert.authority_id,
                    "serial": cert.serial,
                    "reason": reason,
                    "revoked_at": at,
                }
                for cert in todo
            ],
        )
        touched = {cert.authority_id for cert in todo}
        return [cert.serial for cert in todo], [fp for i, fp in ours if i in touched]

    def crl_authorities(self, name: DeploymentName) -> list[str]:
        """Fingerprints of the CAs whose CRLs the deployment publishes: the active one,
        then the one being rotated out."""
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(authorities.c.fingerprint, authorities.c.status)
                .join(deployments, deployments.c.id == authorities.c.deployment_id)
                .where(
                    deployments.c.name == name.value,
                    authorities.c.status.in_([ACTIVE, Status.RETIRING]),
                )
            ).all()
        return [r.fingerprint for r in sorted(rows, key=lambda r: r.status != ACTIVE)]

    def crl_state(
        self, connection: Connection, authority_fingerprint: str
    ) -> tuple[int, list[tuple[str, dt.datetime, str]]]:
        """On ``connection`` (locked): the next CRL number (above every CRL of the
        deployment, across CA rotations) and every revocation of that authority."""
        authority = connection.execute(
            sa.select(authorities.c.id, authorities.c.deployment_id).where(
                authorities.c.fingerprint == authority_fingerprint
            )
        ).one()
        highest = connection.scalar(
            sa.select(sa.func.max(crls.c.number))
            .join(authorities, authorities.c.id == crls.c.authority_id)
            .where(authorities.c.deployment_id == authority.deployment_id)
        )
        listed = connection.execute(
            sa.select(revocations.c.serial, revocations.c.revoked_at, revocations.c.reason)
            .where(revocations.c.authority_id == authority.id)
            .order_by(revocations.c.id)
        ).all()
        return int(highest or 0) + 1, [(r.serial, r.revoked_at, r.reason) for r in listed]

    def put_crl(
        self,
        connection: Connection,
        authority_fingerprint: str,
        number: int,
        this_update: dt.datetime,
        next_update: dt.datetime,
        der: bytes,
    ) -> None:
        authority_id = connection.scalar(
            sa.select(authorities.c.id).where(authorities.c.fingerprint == authority_fingerprint)
        )
        connection.execute(sa.delete(crls).where(crls.c.authority_id == authority_id))
        connection.execute(
            sa.insert(crls).values(
                authority_id=authority_id,
                number=number,
                this_update=this_update,
                next_update=next_update,
                crl_der=der,
            )
        )

    def latest_crl(self, authority_fingerprint: str) -> tuple[int, dt.datetime, bytes] | None:
        """An authority's latest CRL: its number, next update and DER."""
        with self.reading() as connection:
            row = connection.execute(
                sa.select(crls.c.number, crls.c.next_update, crls.c.crl_der)
                .join(authorities, authorities.c.id == crls.c.authority_id)
                .where(authorities.c.fingerprint == authority_fingerprint)
            ).one_or_none()
        return None if row is None else (row.number, row.next_update, row.crl_der)

    def crl_der(self, connection: Connection, authority_fingerprint: str) -> bytes:
        der = connection.scalar(
            sa.select(crls.c.crl_der)
            .join(authorities, authorities.c.id == crls.c.authority_id)
            .where(authorities.c.fingerprint == authority_fingerprint)
        )
        assert der is not None, "a CRL just stored"
        return bytes(der)

    def lock_deployment(self, connection: Connection, name: DeploymentName) -> None:
        """Hold deployment ``name`` for the rest of the transaction (its CRLs are remade)."""
        self._locked_deployment(connection, name)

    def certificate_by_fingerprint(
        self, cert_fingerprint: str
    ) -> tuple[DeploymentName, Status] | None:
        """Whose certificate this is, and where it stands."""
        with self.transaction() as connection:
            row = connection.execute(
                sa.select(deployments.c.name, certificates.c.status)
                .join(deployments, deployments.c.id == certificates.c.deployment_id)
                .where(certificates.c.fingerprint == cert_fingerprint)
            ).one_or_none()
        return None if row is None else (DeploymentName(row.name), Status(row.status))

    def signing_authorities(self) -> list[tuple[DeploymentName, str, bytes]]:
        """Every CA certserver signs with or still answers for (active and retiring): its
        deployment, fingerprint and certificate."""
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(deployments.c.name, authorities.c.fingerprint, authorities.c.cert_der)
                .join(deployments, deployments.c.id == authorities.c.deployment_id)
                .where(authorities.c.status.in_([ACTIVE, Status.RETIRING]))
                .order_by(authorities.c.id)
            ).all()
        return [(DeploymentName(r.name), r.fingerprint, r.cert_der) for r in rows]

    def serial_status(
        self, authority_fingerprint: str, serial: str
    ) -> tuple[bool, dt.datetime | None, str | None]:
        """Whether the CA issued ``serial``, and when and why it revoked it (if it did)."""
        with self.transaction() as connection:
            authority_id = connection.scalar(
                sa.select(authorities.c.id).where(
                    authorities.c.fingerprint == authority_fingerprint
                )
            )
            known = connection.scalar(
                sa.select(certificates.c.id).where(
                    certificates.c.authority_id == authority_id,
                    certificates.c.serial == serial,
                )
            )
            revoked = connection.execute(
                sa.select(revocations.c.revoked_at, revocations.c.reason).where(
                    revocations.c.authority_id == authority_id, revocations.c.serial == serial
                )
            ).one_or_none()
        if revoked is None:
            return known is not None, None, None
        return True, revoked.revoked_at, revoked.reason

    def issued_certificates(self, name: DeploymentName) -> list[CertificateRecord]:
        """Certificates signed for keys held elsewhere (sign-csr), not revoked."""
        with self.transaction() as connection:
            rows = connection.execute(
                sa.select(certificates)
                .join(deployments, deployments.c.id == certificates.c.deployment_id)
                .where(deployments.c.name == name.value, certificates.c.status == Status.ISSUED)
                .order_by(certificates.c.id)
            ).all()
        return [_certificate(row) for row in rows]

    def certificate_counts(self) -> dict[str, int]:
        """How many certificates are in each state, and how many keys wait for a signature."""
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(certificates.c.status, sa.func.count()).group_by(certificates.c.status)
            ).all()
            pending = connection.scalar(sa.select(sa.func.count()).select_from(pending_keys))
        counts = {str(status): int(count) for status, count in rows}
        counts["pending"] = int(pending or 0)
        return counts
