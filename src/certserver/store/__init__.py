"""The store: SQLAlchemy tables, repository and Alembic migrations."""

from certserver.store.records import (
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
)
from certserver.store.repository import Store

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
