"""Certificates issued for keys held elsewhere (sign-csr): no sealed key.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.alter_column("key_sealed", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.alter_column("key_sealed", existing_type=sa.LargeBinary(), nullable=False)
