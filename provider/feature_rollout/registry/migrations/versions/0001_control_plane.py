"""Control plane: workspaces, definitions, feature view versions, plans and the promotion audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME = sa.String(63)
HASH = sa.String(64)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("name", NAME, primary_key=True),
        sa.Column("live", sa.Boolean, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        ts("created_at"),
    )
    for table in ("entities", "data_sources", "feature_services"):
        op.create_table(
            table,
            sa.Column("workspace", NAME, primary_key=True),
            sa.Column("name", NAME, primary_key=True),
            sa.Column("spec", JSON, nullable=False),
            sa.Column("schema_hash", HASH, nullable=False),
            sa.Column("metadata_hash", HASH, nullable=False),
            sa.Column("served_hash", HASH, nullable=False),
            ts("updated_at"),
        )
    op.create_table(
        "feature_views",
        sa.Column("workspace", NAME, primary_key=True),
        sa.Column("name", NAME, primary_key=True),
        sa.Column("active_version", sa.Integer, nullable=True),
        sa.Column("metadata_json", JSON, nullable=False),
        sa.Column("metadata_hash", HASH, nullable=False),
        sa.Column("hold_json", JSON, nullable=True),
        sa.Column("pinned_schema_hash", HASH, nullable=True),
        ts("deleted_at", nullable=True),
        ts("created_at"),
        ts("updated_at"),
    )
    op.create_table(
        "feature_view_versions",
        sa.Column("workspace", NAME, primary_key=True),
        sa.Column("name", NAME, primary_key=True),
        sa.Column("version_number", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.String(36), nullable=False, unique=True),
        sa.Column("spec_json", JSON, nullable=False),
        sa.Column("schema_hash", HASH, nullable=False),
        sa.Column("served_hash", HASH, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("online_table", NAME, nullable=False, unique=True),
        sa.Column("plan_id", sa.String(32), nullable=True),
        ts("created_at"),
        sa.Column("created_by", sa.String(255), nullable=True),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("workspace", NAME, nullable=False, index=True),
        sa.Column("base_revision", sa.Integer, nullable=False),
        sa.Column("options_json", JSON, nullable=False),
        sa.Column("changes_json", JSON, nullable=False),
        sa.Column("summary_json", JSON, nullable=False),
        sa.Column("rendered", sa.Text, nullable=False),
        ts("created_at"),
        sa.Column("created_by", sa.String(255), nullable=True),
        ts("applied_at", nullable=True),
        sa.Column("applied_revision", sa.Integer, nullable=True),
        sa.Column("applied_by", sa.String(255), nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workspace", NAME, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("run_id", sa.String(250), nullable=True),
        sa.Column("plan_id", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        ts("at"),
    )
    op.create_index("ix_promotions_workspace_name", "promotions", ["workspace", "name"])


def downgrade() -> None:
    op.drop_index("ix_promotions_workspace_name", table_name="promotions")
    for table in ("promotions", "plans", "feature_view_versions", "feature_views", "feature_services",
                  "data_sources", "entities", "workspaces"):
        op.drop_table(table)
