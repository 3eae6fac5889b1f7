"""Data plane: the per-version materialization ledger and stored parity reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NAME = sa.String(63)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "materialization_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("version_number", sa.Integer, nullable=False),
        ts("start"),
        ts("end"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_read", sa.BigInteger, nullable=False),
        sa.Column("rows_written", sa.BigInteger, nullable=False),
        ts("started_at"),
        ts("finished_at", nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_materialization_runs_version", "materialization_runs", ["workspace", "name", "version_number"])
    op.create_table(
        "parity_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("baseline_ref", sa.String(200), nullable=False),
        sa.Column("candidate_ref", sa.String(200), nullable=False),
        sa.Column("candidate_version", sa.Integer, nullable=True),
        sa.Column("spine_digest", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("summary_json", JSON, nullable=False),
        ts("created_at"),
        sa.Column("run_id", sa.String(250), nullable=True),
    )
    op.create_index("ix_parity_reports_view", "parity_reports", ["workspace", "name"])


def downgrade() -> None:
    op.drop_index("ix_parity_reports_view", table_name="parity_reports")
    op.drop_table("parity_reports")
    op.drop_index("ix_materialization_runs_version", table_name="materialization_runs")
    op.drop_table("materialization_runs")
