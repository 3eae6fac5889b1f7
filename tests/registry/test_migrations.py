"""Registry migrations: the schema they build is the one the code queries, a registry made by the
first migration upgrades in place without losing rows, and first use migrates exactly once."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from feature_rollout.cli import main
from feature_rollout.core.errors import RepoConfigError
from feature_rollout.registry import tables
from feature_rollout.registry.engine import dispose_engines, get_engine
from feature_rollout.registry.migrate import (
    HEAD_REVISION,
    KNOWN_REVISIONS,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    forget_checked,
    upgrade,
)
from feature_rollout.store import FeatureStore
from tests.conftest import dump_registry
from tests.registry.test_concurrency import race


def test_head_constants_match_the_migration_scripts():
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == HEAD_REVISION
    assert sorted(r.revision for r in script.walk_revisions()) == sorted(KNOWN_REVISIONS)


def test_migrated_schema_matches_the_tables_the_code_uses(registry_url):
    engine = get_engine(registry_url)
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                         "compare_type": True})
        diffs = [d for d in compare_metadata(context, tables.metadata)
                 if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == VERSION_TABLE)]
    assert diffs == []


def test_first_use_migrates_to_head(store, defs, registry_url):
    store.apply([defs.view()])
    with get_engine(registry_url).connect() as conn:
        assert current_revision(conn) == HEAD_REVISION


def copy_rows_into_an_old_schema(source_url: str, target_url: str) -> None:
    """Copy the rows real operations made into a registry at an older revision, keeping only the columns
    that revision has (what an older release would have written)."""
    source, target = sa.create_engine(source_url), get_engine(target_url)
    with source.connect() as read, target.begin() as write:
        existing = set(sa.inspect(write).get_table_names())
        for table in tables.metadata.sorted_tables:
            if table.name not in existing:
                continue
            old = sa.Table(table.name, sa.MetaData(), autoload_with=write)
            rows = read.execute(sa.select(*(table.c[c.name] for c in old.columns))).mappings().all()
            if rows:
                write.execute(table.insert(), [dict(r) for r in rows])
    source.dispose()


def test_upgrade_from_the_first_migration_keeps_every_row(registry_url, defs, tmp_path, capsys):
    current = FeatureStore(tmp_path, config={"project": "demo", "registry": f"sqlite:///{tmp_path}/current.db"})
    view = defs.view()
    current.apply([view, defs.service(view)])
    current.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))], no_promote=True)
    current.promote("driver_stats", "v1", require_gates=False)
    current.rollback("driver_stats", reason="upgrade test")
    upgrade(get_engine(registry_url), "0001")
    copy_rows_into_an_old_schema(f"sqlite:///{tmp_path}/current.db", registry_url)
    before = dump_registry(registry_url)
    assert "materialization_runs" not in before and len(before["feature_view_versions"]) == 2

    assert main(["registry", "upgrade", "--registry-url", registry_url]) == 0
    assert f"from 0001 to {HEAD_REVISION}" in capsys.readouterr().out
    after = dump_registry(registry_url)
    for table, rows in before.items():
        old_rows = [json.loads(r) for r in rows]
        new_rows = [json.loads(r) for r in after[table]]
        added = set(new_rows[0]) - set(old_rows[0]) if new_rows else set()
        # Every row kept, with the same values; columns added by later migrations start empty.
        assert [{k: v for k, v in r.items() if k not in added} for r in new_rows] == old_rows, table
        assert all(r[k] is None for r in new_rows for k in added), table
    assert after["materialization_runs"] == [] and after["parity_reports"] == []

    forget_checked()
    upgraded = FeatureStore(tmp_path, config={"project": "demo", "registry": registry_url})
    assert [v["state"] for v in upgraded.list_feature_view_versions("driver_stats")] == ["active", "retired"]
    assert upgraded.registry.get_view("demo", "driver_stats").hold.versions == (1,)
    replan = upgraded.plan([view, defs.service(view)])
    assert not replan.has_changes, replan.render()
    assert main(["registry", "upgrade", "--registry-url", registry_url]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_database_shared_with_airflow_keeps_airflows_alembic_version(registry_url, defs, tmp_path):
    engine = get_engine(registry_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('d2f4e1b3c5a7')"))
    FeatureStore(tmp_path, config={"project": "demo", "registry": registry_url}).apply([defs.view()])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "d2f4e1b3c5a7"
        assert current_revision(conn) == HEAD_REVISION


def test_a_registry_from_a_newer_release_is_refused(registry_url, tmp_path, defs):
    engine = get_engine(registry_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    forget_checked()
    store = FeatureStore(tmp_path, config={"project": "demo", "registry": registry_url})
    with pytest.raises(RepoConfigError, match="schema revision '0099'.*migrated by a newer release"):
        store.plan([defs.view()])


def test_two_processes_opening_a_new_registry_migrate_it_once(registry_url, tmp_path):
    dispose_engines()
    results = race(tmp_path, registry_url, [("migrate", "-"), ("migrate", "-")])
    assert [r["ok"] for r in results] == [True, True]
    with get_engine(registry_url).connect() as conn:
        assert current_revision(conn) == HEAD_REVISION
        assert conn.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
