"""Revocation: revoked serials per authority, and each authority's latest CRL.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certserver.store.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(42), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authorities.id"],
            name="fk_revocations_authority_id_authorities",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_revocations"),
        sa.UniqueConstraint("authority_id", "serial", name="uq_revocations_authority_serial"),
    )
    op.create_table(
        "crls",
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("this_update", UtcDateTime(), nullable=False),
        sa.Column("next_update", UtcDateTime(), nullable=False),
        sa.Column("crl_der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authorities.id"],
            name="fk_crls_authority_id_authorities",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("authority_id", name="pk_crls"),
    )


def downgrade() -> None:
    op.drop_table("crls")
    op.drop_table("revocations")
