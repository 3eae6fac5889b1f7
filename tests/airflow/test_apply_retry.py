"""FeatureStoreApplyOperator under Airflow's at-least-once execution: a retry of the task whose earlier
try committed the apply (and died before reporting it) succeeds with what that try did; any other
task meeting an applied plan still fails without retry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.airflow.conftest import store_of
from tests.conftest import add_feature


def context(task_id: str = "rollout.apply", run_id: str = "manual__2026-01-08T00:00:00+00:00") -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="feature_rollout_manual", run_id=run_id, task_id=task_id)
    return {"ti": ti, "dag_run": SimpleNamespace(dag_id="feature_rollout_manual", triggering_user_name="alice")}


def test_a_retry_of_the_task_that_applied_the_plan_succeeds(rollout_repo):
    from airflow.sdk.exceptions import AirflowFailException

    from feature_rollout.operators.feature_rollout import FeatureStoreApplyOperator

    store = store_of(rollout_repo)
    store.apply()
    add_feature(rollout_repo)
    plan = store.plan(no_promote=True)
    operator = FeatureStoreApplyOperator(task_id="apply", plan_id=plan.id, no_promote=True)
    first = operator.execute(context())
    assert first["created_versions"] == [{"view": "driver_stats", "version": 1, "online_table": "demo_driver_stats_v1"}]
    revision = store.registry.revision("demo")

    retried = operator.execute(context())  # the same task again: the earlier try's commit stands
    assert {k: retried[k] for k in ("plan_id", "revision", "applied", "created_versions", "promoted", "staged")} == \
        {k: first[k] for k in ("plan_id", "revision", "applied", "created_versions", "promoted", "staged")}
    assert store.registry.revision("demo") == revision  # nothing applied twice
    assert [v["version"] for v in store.list_feature_view_versions("driver_stats")] == ["v0", "v1"]

    for other in (context(task_id="other.apply"), context(run_id="manual__2026-01-09T00:00:00+00:00")):
        with pytest.raises(AirflowFailException, match=f"Plan '{plan.id}' has already been applied"):
            operator.execute(other)
