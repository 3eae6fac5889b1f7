"""Indexes for the UI's pages (DESIGN §13): plans by workspace and time, audit rows by plan, versions by
state. Without them a view with a thousand versions, or a workspace with a thousand plans, made its
page scan and sort whole tables (benchmarks/ui_pages.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_plans_workspace_created_at", "plans", ["workspace", "created_at"])
    op.create_index("ix_promotions_plan_id", "promotions", ["plan_id"])
    op.create_index("ix_feature_view_versions_state", "feature_view_versions", ["state", "workspace", "name"])


def downgrade() -> None:
    op.drop_index("ix_feature_view_versions_state", "feature_view_versions")
    op.drop_index("ix_promotions_plan_id", "promotions")
    op.drop_index("ix_plans_workspace_created_at", "plans")
