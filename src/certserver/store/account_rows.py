"""The store's API credentials and audit log."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy import Connection

from certserver.accounts import Credential
from certserver.audit import AuditEntry
from certserver.store.core import StoreCore

# records
from certserver.store.records import (
    _audit_row,
    _credential,
)
from certserver.store.tables import (
    audit_log,
    credentials,
)


class AccountRows(StoreCore):
    # -- credentials and the audit log ------------------------------------------------------

    def add_credential(self, credential: Credential, secret_sha256: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                sa.insert(credentials).values(
                    credential_id=credential.credential_id,
                    kind=credential.kind,
                    name=credential.name,
                    role=credential.role,
                    secret_sha256=secret_sha256,
                    created_at=credential.created_at,
                    expires_at=credential.expires_at,
                    revoked_at=None,
                )
            )

    def credential_by_digest(self, secret_sha256: str) -> tuple[Credential, str] | None:
        """The credential whose secret (token, or certificate fingerprint) has this digest."""
        with self.reading() as connection:
            row = connection.execute(
                sa.select(credentials).where(credentials.c.secret_sha256 == secret_sha256)
            ).one_or_none()
        return None if row is None else (_credential(row), row.secret_sha256)

    def list_credentials(self) -> list[Credential]:
        with self.reading() as connection:
            rows = connection.execute(sa.select(credentials).order_by(credentials.c.id)).all()
        return [_credential(row) for row in rows]

    def revoke_credential(self, credential_id: str, at: dt.datetime) -> Credential | None:
        with self.transaction() as connection:
            changed = connection.execute(
                sa.update(credentials)
                .where(
                    credentials.c.credential_id == credential_id,
                    credentials.c.revoked_at.is_(None),
                )
                .values(revoked_at=at)
            ).rowcount
            row = connection.execute(
                sa.select(credentials).where(credentials.c.credential_id == credential_id)
            ).one_or_none()
        if row is None or not changed:
            return None
        return _credential(row)

    def add_audit(self, entry: AuditEntry, connection: Connection | None = None) -> None:
        """Write an audit entry: on ``connection`` (the transaction of the change it
        records, committed with it), or in a transaction of its own."""
        if connection is not None:
            connection.execute(sa.insert(audit_log).values(**_audit_row(entry)))
            return
        with self.transaction() as own:
            own.execute(sa.insert(audit_log).values(**_audit_row(entry)))

    def list_audit(self, *, limit: int = 100, offset: int = 0) -> list[AuditEntry]:
        """Newest first."""
        with self.reading() as connection:
            rows = connection.execute(
                sa.select(audit_log)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [
            AuditEntry(r.at, r.actor, r.action, r.target, r.source, r.result, r.detail)
            for r in rows
        ]

    def count_audit(self) -> int:
        with self.reading() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(audit_log)) or 0)
