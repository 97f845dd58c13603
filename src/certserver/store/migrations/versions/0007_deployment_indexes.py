"""Indexes on the deployment of every child row, and on (deployment, status) of the
certificates: reading one deployment (as every signature does) no longer scans all
certificates of the store, nor all those issued for CSRs under that deployment.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("authorities", "pending_keys", "trust_certificates", "links")
_CERTIFICATES = "ix_certificates_deployment_id_status"


def upgrade() -> None:
    for table in _TABLES:
        op.create_index(f"ix_{table}_deployment_id", table, ["deployment_id"])
    op.create_index(_CERTIFICATES, "certificates", ["deployment_id", "status"])


def downgrade() -> None:
    op.drop_index(_CERTIFICATES, "certificates")
    for table in reversed(_TABLES):
        op.drop_index(f"ix_{table}_deployment_id", table)
