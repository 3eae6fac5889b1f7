"""A downstream DAG scheduled on a promotion Asset: it runs whenever a version of ``driver_stats`` in
workspace ``demo`` is promoted (by the rollout or a rollback), e.g. to retrain a model on it."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, task

DRIVER_STATS = Asset(uri="feature-rollout://demo/driver_stats", name="feature-rollout://demo/driver_stats")

with DAG(
    dag_id="feature_rollout_consumer",
    schedule=[DRIVER_STATS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["feature-rollout"],
    doc_md=__doc__,
) as dag:

    @task
    def retrain(**context: object) -> dict[str, object]:
        events = context["triggering_asset_events"][DRIVER_STATS]  # type: ignore[index]
        versions = [event.extra.get("version") for event in events]
        print(f"driver_stats promoted to version(s) {versions}: retraining")
        return {"versions": versions}

    retrain()
