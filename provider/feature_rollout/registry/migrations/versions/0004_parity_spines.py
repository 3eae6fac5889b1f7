"""Parity spines: the rows a parity check compared, stored once per digest so that later checks can
reuse exactly the same spine.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parity_spines",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("parquet", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("parity_spines")
