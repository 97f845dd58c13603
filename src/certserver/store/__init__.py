"""The store: SQLAlchemy tables, repository and Alembic migrations."""

from certserver.store.repository import (
    AuthorityRecord,
    CertificateRecord,
    DeploymentRecord,
    DeploymentSummary,
    Store,
)

__all__ = [
    "AuthorityRecord",
    "CertificateRecord",
    "DeploymentRecord",
    "DeploymentSummary",
    "Store",
]
