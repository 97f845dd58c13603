"""Enterprise CAs: deployments waiting for signed certificates, their pending keys, and the
enterprise's trust anchors and intermediates.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "deployments",
        sa.Column("ca_mode", sa.String(32), nullable=False, server_default="certserver"),
    )
    op.add_column(
        "deployments", sa.Column("state", sa.String(16), nullable=False, server_default="ready")
    )
    op.add_column("deployments", sa.Column("validity_days", sa.Integer(), nullable=True))
    op.add_column("deployments", sa.Column("hosts", sa.Text(), nullable=True))
    # a certificate an enterprise CA signed has no authority of ours
    with op.batch_alter_table("certificates") as batch:
        batch.alter_column("authority_id", existing_type=sa.Integer(), nullable=True)
    op.create_table(
        "pending_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("public_key_sha256", sa.String(64), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=False),
        sa.Column("key_sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_pending_keys_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_pending_keys"),
        sa.UniqueConstraint("deployment_id", "role", name="uq_pending_keys_deployment_role"),
    )
    op.create_table(
        "trust_certificates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("cert_der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_trust_certificates_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trust_certificates"),
        sa.UniqueConstraint(
            "deployment_id", "kind", "position", name="uq_trust_certificates_position"
        ),
    )


def downgrade() -> None:
    op.drop_table("trust_certificates")
    op.drop_table("pending_keys")
    with op.batch_alter_table("certificates") as batch:
        batch.alter_column("authority_id", existing_type=sa.Integer(), nullable=False)
    for column in ("hosts", "validity_days", "state", "ca_mode"):
        op.drop_column("deployments", column)
