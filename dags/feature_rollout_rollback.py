"""One-click rollback: promote the previous version of a view (or a given one) and hold the current one.

An apply will not re-promote the held version until someone releases the hold
(``feature-rollout release-hold VIEW``).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from feature_rollout.operators.feature_rollout import (
    NAME_PARAM_PATTERN,
    VERSION_PARAM_PATTERN,
    RollbackVersionOperator,
)

with DAG(
    dag_id="feature_rollout_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["feature-rollout"],
    doc_md=__doc__,
    params={
        "view": Param(type="string", pattern=NAME_PARAM_PATTERN, description="The view to roll back."),
        "to": Param(None, type=["null", "string"], pattern=VERSION_PARAM_PATTERN,
                    description="A version such as v2; default: the previous one."),
        "reason": Param("rollback", type="string", description="Recorded in the audit log."),
    },
) as dag:
    RollbackVersionOperator(
        task_id="rollback",
        view="{{ params.view }}",
        to="{{ params.to or '' }}",
        reason="{{ params.reason }} ({{ run_id }})",
        retries=0,
    )
