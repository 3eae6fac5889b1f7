"""The manual rollout DAG end to end with ``dag.test()`` (manual runs: ``logical_date=None``).

One module-scoped scenario, as dag.test() is slow the first time in a process:
1. roll out v0 of a new repo (staged, materialized, populated, promoted: nothing to be on par with);
2. add a feature and roll out v1 (parity against v0 passes, gate, promote);
and the assertions read the registry, XCom and the asset events afterwards.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from tests.airflow.conftest import connection_json, store_of
from tests.airflow.dagrun import asset_events, run, snapshot
from tests.conftest import DEMO_END, add_feature

START = (DEMO_END - timedelta(days=2)).isoformat()
END = DEMO_END.isoformat()


@pytest.fixture(scope="module")
def rollout(tmp_path_factory, airflow_db):
    from feature_rollout.scaffold import init_repo

    repo = init_repo(tmp_path_factory.mktemp("rollout") / "repo", project="rollout", drivers=20, days=3,
                     end=DEMO_END)
    previous = os.environ.get("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT")
    os.environ["AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT"] = connection_json(repo)
    conf = {"views": ["driver_stats"], "start": START, "end": END, "chunk_hours": 12, "sample_size": 100}
    tasks = ("rollout.plan", "rollout.apply", "rollout.parity", "rollout.promote")
    first = snapshot(run("feature_rollout_manual", conf), *tasks, keys=("return_value", "feature_view"))
    add_feature(repo)
    second = snapshot(run("feature_rollout_manual", conf), *tasks, keys=("return_value", "feature_view"))
    yield repo, first, second
    if previous is None:
        os.environ.pop("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT", None)
    else:
        os.environ["AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT"] = previous


def test_both_runs_succeed(rollout):
    _, first, second = rollout
    for done in (first, second):
        assert done["state"] == "success", done["states"]
        assert done["states"]["rollout.materialize"] == ["success"] * 4  # 2 days in 12-hour chunks
        assert done["states"]["rollout.promote"] == ["success"]
        assert done["states"]["fail_the_run"] == ["skipped"]


def test_the_registry_after_two_rollouts(rollout):
    repo, _, _ = rollout
    store = store_of(repo)
    versions = store.list_feature_view_versions("driver_stats")
    assert [(v["version"], v["state"]) for v in versions] == [("v0", "retired"), ("v1", "active")]
    [first_promotion, second_promotion] = [e for e in reversed(store.history("driver_stats"))
                                          if e["kind"] == "promote"]
    assert (first_promotion["to_version"], second_promotion["from_version"], second_promotion["to_version"]) == (
        0, 0, 1)
    assert second_promotion["actor"].startswith("airflow:feature_rollout_manual")
    assert second_promotion["run_id"].startswith("feature_rollout_manual/") and \
        second_promotion["run_id"].endswith("/rollout.promote")
    runs = store.ledger.runs("rollout", "driver_stats", 1)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"succeeded"}
    assert [(c.start.isoformat(), c.end.isoformat()) for c in store.ledger.coverage("rollout", "driver_stats", 1)] == [
        (START, END)]
    [report] = store.parity_reports("driver_stats")
    assert report.passed
    assert (report.baseline, report.candidate) == ("rollout/driver_stats@v0", "rollout/driver_stats@v1")
    assert report.rows_compared == 100


def test_xcom_of_plan_apply_and_parity(rollout):
    _, first, second = rollout
    [plan] = second["xcom"][("rollout.plan", "return_value")]
    assert plan["has_changes"] and plan["summary"] == {"unchanged": 3, "new_version": 1}
    assert plan["plan"]["options"]["no_promote"] is True
    [applied] = second["xcom"][("rollout.apply", "return_value")]
    assert applied["plan_id"] == plan["plan_id"]
    assert applied["created_versions"] == [{"view": "driver_stats", "version": 1,
                                            "online_table": "rollout_driver_stats_v1"}]
    [parity] = second["xcom"][("rollout.parity", "return_value")]
    assert parity["passed"] and parity["mismatched_rows"] == 0
    [skipped] = first["xcom"][("rollout.parity", "return_value")]  # v0 had nothing to compare with
    assert skipped == {"passed": True, "skipped": "driver_stats has no active version"}
    [link] = second["xcom"][("rollout.promote", "feature_view")]
    assert link == {"workspace": "rollout", "view": "driver_stats", "version": None}


def test_asset_events(rollout):
    # One event per version and rollout, after its chunks (parallel chunks emitting the first event of a
    # new asset would race in Airflow, ADR 0009); rows_written sums the chunks' ledger runs.
    repo, _, second = rollout
    [(_, extra)] = asset_events("feature-rollout://rollout/driver_stats/v1")
    prefix = f"feature_rollout_manual/{second['run_id']}/"
    written = sum(r["rows_written"] for r in store_of(repo).ledger.runs("rollout", "driver_stats", 1)
                  if r["run_id"].startswith(prefix))
    assert extra == {"rows_written": written, "start": START, "end": END}
    assert 20 <= written <= 80  # every driver at least once; at most once per chunk
    promoted = [extra for uri, extra in asset_events("feature-rollout://rollout/driver_stats") if uri.endswith("stats")]
    assert promoted == [{"version": 0}, {"version": 1}]


def test_a_second_run_without_changes_changes_nothing(rollout):
    repo, _, _ = rollout
    store = store_of(repo)
    before = [(v["version"], v["state"]) for v in store.list_feature_view_versions("driver_stats")]
    done = snapshot(run("feature_rollout_manual", {"views": ["driver_stats"], "start": START, "end": END,
                                                  "chunk_hours": 48}))
    task_states = done["states"]
    assert task_states["rollout.apply"] == ["success"]
    # Nothing is staged any more: the mapped tasks have nothing to do, and nothing is promoted.
    assert "rollout.promote" not in task_states or task_states["rollout.promote"] in ([], ["skipped"])
    assert [(v["version"], v["state"]) for v in store.list_feature_view_versions("driver_stats")] == before
