"""The store: SQLAlchemy tables, repository and Alembic migrations."""

from certserver.store.repository import (
    AuthorityRecord,
    CertificateRecord,
    DeploymentRecord,
    DeploymentState,
    DeploymentSummary,
    LinkRecord,
    PendingKeyRecord,
    Status,
    Store,
    TrustKind,
    TrustRecord,
)

__all__ = [
    "AuthorityRecord",
    "CertificateRecord",
    "DeploymentRecord",
    "DeploymentState",
    "DeploymentSummary",
    "LinkRecord",
    "PendingKeyRecord",
    "Status",
    "Store",
    "TrustKind",
    "TrustRecord",
]
