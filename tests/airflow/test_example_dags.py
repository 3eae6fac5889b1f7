"""Every example DAG of dags/ run with dag.test(), and parsing them with the registry unreachable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.airflow.conftest import store_of
from tests.airflow.dagrun import DAGS, asset_events, run, snapshot
from tests.conftest import DEMO_END

START = (DEMO_END - timedelta(days=1)).isoformat()
END = DEMO_END.isoformat()
CONF = {"views": ["driver_stats"], "start": START, "end": END, "chunk_hours": 24, "sample_size": 200}
TASKS = ("rollout.parity", "rollout.apply", "rollout.promote")


def write_copy(repo: Path, *, delta: float, created_shift_s: int = 0) -> None:
    """data/driver_stats_v2.parquet: the data with five drivers' conv_rate moved by ``delta``."""
    table = pq.read_table(repo / "data" / "driver_stats.parquet")
    changed = pc.is_in(table.column("driver_id"), pa.array([1001, 1002, 1003, 1004, 1005]))
    conv = pc.if_else(changed, pc.add(table.column("conv_rate"), pa.scalar(delta, pa.float32())),
                      table.column("conv_rate"))
    table = table.set_column(table.schema.get_field_index("conv_rate"), "conv_rate", conv)
    created = pc.add(table.column("created"), pa.scalar(timedelta(seconds=created_shift_s)))
    table = table.set_column(table.schema.get_field_index("created"), "created", created)
    pq.write_table(table, repo / "data" / "driver_stats_v2.parquet")


def point_at_copy(repo: Path) -> None:
    path = repo / "features.py"
    path.write_text(path.read_text().replace('path="data/driver_stats.parquet"',
                                             'path="data/driver_stats_v2.parquet"'))


def test_a_failing_parity_stops_the_rollout_and_the_fixed_rerun_completes(rollout_repo, airflow_db):
    first = snapshot(run("feature_rollout_manual", CONF), *TASKS)
    assert first["state"] == "success"
    # v1 reads a copy of the data in which a "transformation bug" moved five drivers' conv_rate.
    write_copy(rollout_repo, delta=0.5)
    point_at_copy(rollout_repo)
    failed = snapshot(run("feature_rollout_manual", CONF), *TASKS)
    assert failed["state"] == "failed"
    assert failed["states"]["rollout.parity"] == ["failed"]
    assert failed["states"]["rollout.promote"] == ["upstream_failed"]  # never ran
    assert failed["states"]["fail_the_run"] == ["failed"]
    store = store_of(rollout_repo)
    assert store.registry.get_view("demo", "driver_stats").active_version == 0
    [report] = store.parity_reports("driver_stats")
    assert not report.passed and report.mismatches["conv_rate"] > 0

    # The fix lands as re-written data (newer created times), under the same definition: same v1.
    write_copy(rollout_repo, delta=0.0, created_shift_s=1)
    rerun = snapshot(run("feature_rollout_manual", CONF), *TASKS)
    assert rerun["state"] == "success", rerun["states"]
    [applied] = rerun["xcom"][("rollout.apply", "return_value")]
    assert applied["applied"] is False and applied["created_versions"] == []  # nothing new to stage
    versions = store.list_feature_view_versions("driver_stats")
    assert [(v["version"], v["state"]) for v in versions] == [("v0", "retired"), ("v1", "active")]  # no v2
    # The online table holds each driver once, with the fixed values; coverage is one interval.
    _, v1 = store.registry.get_version("demo", "driver_stats", 1)
    online = store.online_store.dump(store.online_table(v1))
    assert online.num_rows == 20
    [covered] = store.ledger.coverage("demo", "driver_stats", 1)
    assert (covered.start.isoformat(), covered.end.isoformat()) == (START, END)
    assert store.check_skew("driver_stats", "v1")["passed"]
    assert store.parity_reports("driver_stats")[0].passed


def test_scheduled_materialization_of_every_live_version(rollout_repo, airflow_db):
    from feature_rollout.scaffold import init_repo  # noqa: F401 - the repo comes from the fixture
    from tests.conftest import add_feature

    store = store_of(rollout_repo)
    store.apply()
    add_feature(rollout_repo)
    store.apply(no_promote=True)
    logical = DEMO_END - timedelta(hours=2)  # Airflow 3's @hourly: the data interval is [logical - 1h, logical)
    done = snapshot(run("feature_rollout_materialize", logical_date=logical), "materialize")
    assert done["state"] == "success", done["states"]
    results = done["xcom"][("materialize", "return_value")]
    interval = ((logical - timedelta(hours=1)).isoformat(), logical.isoformat())
    assert sorted((r["version"], r["start"], r["end"]) for r in results) == [(0, *interval), (1, *interval)]
    assert all(r["rows_written"] == 20 for r in results)
    uris = {uri for uri, _ in asset_events("feature-rollout://demo/driver_stats/v")}
    assert {"feature-rollout://demo/driver_stats/v0", "feature-rollout://demo/driver_stats/v1"} <= uris


def test_rollback_dag(rollout_repo, airflow_db):
    from tests.conftest import add_feature

    store = store_of(rollout_repo)
    store.apply()
    add_feature(rollout_repo)
    store.apply()  # v1 active
    done = snapshot(run("feature_rollout_rollback", {"view": "driver_stats", "reason": "bad values"}), "rollback")
    assert done["state"] == "success"
    assert done["xcom"][("rollback", "return_value")] == [{"view": "driver_stats", "from_version": 1,
                                                           "to_version": 0}]
    record = store.registry.get_view("demo", "driver_stats")
    assert record.active_version == 0 and record.hold is not None and record.hold.versions == (1,)
    assert store.history("driver_stats")[1]["reason"].startswith("bad values (manual__")
    bad = snapshot(run("feature_rollout_rollback", {"view": "driver_stats", "to": "v7"}), "rollback")
    assert bad["states"]["rollback"] == ["failed"]  # no such version: fails without retry, nothing changes
    assert store.registry.get_view("demo", "driver_stats").active_version == 0


def test_ab_check_between_two_workspaces(rollout_repo, airflow_db):
    store = store_of(rollout_repo)
    store.apply()
    store.materialize(DEMO_END - timedelta(days=1), DEMO_END)
    conf = {"views": ["driver_stats"], "staging_workspace": "staging", "start": START, "end": END,
            "sample_size": 100}
    done = snapshot(run("feature_rollout_ab_check", conf), "parity", "materialize_staging")
    assert done["state"] == "success", done["states"]
    [report] = done["xcom"][("parity", "return_value")]
    assert report["passed"] and (report["baseline"], report["candidate"]) == (
        "demo/driver_stats@v0", "staging/driver_stats@v0")
    workspaces = {w["name"]: w["live"] for w in store.list_workspaces()}
    assert workspaces == {"demo": True, "staging": False}
    assert store.registry.get_view("demo", "driver_stats").active_version == 0  # production untouched


def test_bad_params_fail_the_run_before_any_change(rollout_repo, airflow_db):
    store = store_of(rollout_repo)
    store.apply()
    before = store.registry.get_workspace("demo")["revision"]
    bad = {**CONF, "start": END, "end": START}  # backwards
    done = snapshot(run("feature_rollout_manual", bad))
    assert done["state"] == "failed"
    assert done["states"]["rollout.check_inputs"] == ["failed"]
    assert done["states"]["rollout.plan"] == ["upstream_failed"]
    assert store.registry.get_workspace("demo")["revision"] == before
    with pytest.raises(Exception, match="does not match|is not valid|pattern"):
        run("feature_rollout_manual", {**CONF, "views": ["bad-name"]})  # Param validation, before the run


def test_example_dags_parse_fast_with_the_registry_unreachable(tmp_path):
    """No registry access at parse time: parse each file in a fresh interpreter with a dead registry."""
    env = {**os.environ,
           "AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT": '{"conn_type": "feature_rollout", "host": "127.0.0.1", '
                                                   '"port": 1, "extra": {"repo_path": "/nonexistent"}}'}
    code = (
        "import sys, time\n"
        "import airflow.sdk\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "began = time.perf_counter()\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "took = time.perf_counter() - began\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(len(bag.dags), round(took, 3))\n"
    )
    for path in sorted(DAGS.glob("*.py")):
        began = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        count, parse_seconds = result.stdout.split()[-2:]
        assert int(count) == 1
        assert float(parse_seconds) < 1.0, f"{path.name} took {parse_seconds}s to parse"
        assert time.perf_counter() - began < 60


def test_consumer_dag_runs(airflow_db):
    done = snapshot(run("feature_rollout_consumer"), "retrain")
    assert done["state"] == "success", done["states"]
    assert done["xcom"][("retrain", "return_value")] == [{"versions": []}]  # no triggering event in a test run


def test_scheduled_materialization_runs_have_a_data_interval(monkeypatch):
    """A scheduled run (not only a manual one) must cover a real hour: Airflow 3 turns a plain cron
    string into a trigger timetable whose runs have an empty interval, and materialize refuses those.
    (The unit-test configuration turns cron strings into data-interval timetables; production's does not.)"""
    import pendulum
    from airflow.timetables.base import TimeRestriction

    from tests.airflow.dagrun import load_dag

    monkeypatch.setenv("AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS", "False")  # Airflow 3's default
    dag = load_dag("feature_rollout_materialize")
    from airflow.serialization.encoders import coerce_to_core_timetable

    info = coerce_to_core_timetable(dag.timetable).next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=True))
    assert info is not None
    assert info.data_interval.end - info.data_interval.start == timedelta(hours=1)
