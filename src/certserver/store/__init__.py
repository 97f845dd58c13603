"""The store: SQLAlchemy tables, repository and Alembic migrations."""

from certserver.store.repository import (
    AuthorityRecord,
    CertificateRecord,
    DeploymentQuery,
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
    "DeploymentQuery",
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
