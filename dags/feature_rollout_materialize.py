"""Scheduled materialization of every live version (active and staged), one data interval per run.

The versions are listed at run time and fanned out with dynamic task mapping; each mapped task
materializes its version over the run's data interval and emits the Asset event
``feature-rollout://{workspace}/{view}/v{N}`` that downstream DAGs can schedule on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, task

from feature_rollout.operators.feature_rollout import MATERIALIZATIONS, MaterializeVersionOperator

with DAG(
    dag_id="feature_rollout_materialize",
    # A data-interval timetable: each run covers the hour before it. (Airflow 3's default for a cron
    # string is a trigger timetable, whose runs have an empty interval: nothing to materialize.)
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["feature-rollout"],
    doc_md=__doc__,
) as dag:

    @task
    def live_versions() -> list[dict[str, Any]]:
        """Active and staged versions of every online view (read at run time, never at parse time)."""
        from feature_rollout.hooks.feature_registry import FeatureRegistryHook

        store = FeatureRegistryHook().get_conn()
        state = store.registry.load_state(store.workspace)
        return [{"view": name, "version": version.number}
                for name, record in sorted(state.live_views().items()) if record.metadata.get("online", True)
                for version in record.versions
                if version.state.value in ("active", "staged") and not version.table_dropped]

    MaterializeVersionOperator.partial(task_id="materialize", outlets=[MATERIALIZATIONS]).expand_kwargs(
        live_versions())
