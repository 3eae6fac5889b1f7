"""The registry's tables, for queries. The schema itself is created by the Alembic migrations in
``migrations/versions``; ``tests/registry/test_migrations.py`` checks the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

NAME = sa.String(63)
HASH = sa.String(64)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps are stored in UTC and read back timezone-aware on every backend (SQLite has no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"Registry timestamps must be timezone-aware, got {value!r}.")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData()

workspaces = sa.Table(
    "workspaces", metadata,
    sa.Column("name", NAME, primary_key=True),
    sa.Column("live", sa.Boolean, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


def _definition_table(name: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("workspace", NAME, primary_key=True),
        sa.Column("name", NAME, primary_key=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("schema_hash", HASH, nullable=False),
        sa.Column("metadata_hash", HASH, nullable=False),
        sa.Column("served_hash", HASH, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


entities = _definition_table("entities")
data_sources = _definition_table("data_sources")
feature_services = _definition_table("feature_services")

feature_views = sa.Table(
    "feature_views", metadata,
    sa.Column("workspace", NAME, primary_key=True),
    sa.Column("name", NAME, primary_key=True),
    sa.Column("active_version", sa.Integer, nullable=True),
    sa.Column("metadata_json", JSON, nullable=False),
    sa.Column("metadata_hash", HASH, nullable=False),
    sa.Column("hold_json", JSON, nullable=True),
    sa.Column("pinned_schema_hash", HASH, nullable=True),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

feature_view_versions = sa.Table(
    "feature_view_versions", metadata,
    sa.Column("workspace", NAME, primary_key=True),
    sa.Column("name", NAME, primary_key=True),
    sa.Column("version_number", sa.Integer, primary_key=True),
    sa.Column("version_id", sa.String(36), nullable=False, unique=True),
    sa.Column("spec_json", JSON, nullable=False),
    sa.Column("schema_hash", HASH, nullable=False),
    sa.Column("served_hash", HASH, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # Unique across workspaces: workspaces of one registry usually share one online store.
    sa.Column("online_table", NAME, nullable=False, unique=True),
    sa.Column("plan_id", sa.String(32), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("table_dropped_at", UTCDateTime, nullable=True),
    sa.Index("ix_feature_view_versions_state", "state", "workspace", "name"),
)

plans = sa.Table(
    "plans", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("workspace", NAME, nullable=False, index=True),
    sa.Column("base_revision", sa.Integer, nullable=False),
    sa.Column("options_json", JSON, nullable=False),
    sa.Column("changes_json", JSON, nullable=False),
    sa.Column("summary_json", JSON, nullable=False),
    sa.Column("rendered", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("applied_at", UTCDateTime, nullable=True),
    sa.Column("applied_revision", sa.Integer, nullable=True),
    sa.Column("applied_by", sa.String(255), nullable=True),
    sa.Column("run_id", sa.String(250), nullable=True),
    sa.Index("ix_plans_workspace_created_at", "workspace", "created_at"),
)

promotions = sa.Table(
    "promotions", metadata,
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
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_promotions_workspace_name", "workspace", "name"),
    sa.Index("ix_promotions_plan_id", "plan_id"),
)

materialization_runs = sa.Table(
    "materialization_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", NAME, nullable=False),
    sa.Column("name", NAME, nullable=False),
    sa.Column("version_number", sa.Integer, nullable=False),
    sa.Column("start", UTCDateTime, nullable=False),
    sa.Column("end", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_read", sa.BigInteger, nullable=False),
    sa.Column("rows_written", sa.BigInteger, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("run_id", sa.String(250), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_materialization_runs_version", "workspace", "name", "version_number"),
)

parity_reports = sa.Table(
    "parity_reports", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace", NAME, nullable=False),
    sa.Column("name", NAME, nullable=False),
    sa.Column("baseline_ref", sa.String(200), nullable=False),
    sa.Column("candidate_ref", sa.String(200), nullable=False),
    sa.Column("candidate_version", sa.Integer, nullable=True),
    sa.Column("spine_digest", HASH, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("summary_json", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("run_id", sa.String(250), nullable=True),
    sa.Index("ix_parity_reports_view", "workspace", "name"),
)

parity_spines = sa.Table(
    "parity_spines", metadata,
    sa.Column("digest", HASH, primary_key=True),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("parquet", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
