"""Two-workspace A/B upgrade check (the SDK-upgrade check of the Tecton guide).

Apply the repo's current definitions to a staging workspace (a development workspace, created on
first use), materialize its versions over the given interval, and compare every chosen view with
production on the same spine. Production is not changed; the parity reports are stored and shown.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from feature_rollout.operators.feature_rollout import (
    NAME_PARAM_PATTERN,
    TIME_PARAM_PATTERN,
    FeatureStoreApplyOperator,
    MaterializeVersionOperator,
    ParityCheckOperator,
)

with DAG(
    dag_id="feature_rollout_ab_check",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["feature-rollout"],
    doc_md=__doc__,
    params={
        "views": Param(type="array", minItems=1, items={"type": "string", "pattern": NAME_PARAM_PATTERN}),
        "staging_workspace": Param("staging", type="string", pattern=NAME_PARAM_PATTERN),
        "start": Param(type="string", pattern=TIME_PARAM_PATTERN),
        "end": Param(type="string", pattern=TIME_PARAM_PATTERN),
        "sample_size": Param(1000, type="integer", minimum=1),
        "abs_tol": Param(0.0, type="number", minimum=0),
        "rel_tol": Param(0.0, type="number", minimum=0),
        "max_mismatch_ratio": Param(0.0, type="number", minimum=0, maximum=1),
    },
) as dag:

    @task
    def check_inputs(views: Any, staging: str, start: str, end: str) -> dict[str, Any]:
        """Validate, and create the staging workspace on first use (a development workspace)."""
        from feature_rollout.core.errors import WorkspaceExists
        from feature_rollout.core.intervals import interval
        from feature_rollout.core.refs import validate_name
        from feature_rollout.hooks.feature_registry import FeatureRegistryHook
        from feature_rollout.operators.feature_rollout import parse_time
        from feature_rollout.task_groups import parse_views

        names = [validate_name(v, "feature view") for v in parse_views(views)]
        validate_name(staging, "workspace")
        interval(parse_time(start, "start"), parse_time(end, "end"))
        store = FeatureRegistryHook().get_conn()
        if staging == store.workspace:
            raise ValueError(f"The staging workspace must not be the production one ({store.workspace}).")
        with contextlib.suppress(WorkspaceExists):
            store.create_workspace(staging, live=False)
        return {"views": names, "production": store.workspace, "staging": staging}

    @task
    def staged_targets(inputs: dict[str, Any], start: str, end: str) -> list[dict[str, Any]]:
        return [{"view": v, "start": start, "end": end} for v in inputs["views"]]

    @task
    def pairs(inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"baseline": f"{inputs['production']}/{v}", "candidate": f"{inputs['staging']}/{v}"}
                for v in inputs["views"]]

    inputs = check_inputs("{{ params.views }}", "{{ params.staging_workspace }}", "{{ params.start }}",
                          "{{ params.end }}")
    apply = FeatureStoreApplyOperator(task_id="apply_to_staging", workspace="{{ params.staging_workspace }}")
    materialize = MaterializeVersionOperator.partial(
        task_id="materialize_staging", workspace="{{ params.staging_workspace }}", outlets=[],
    ).expand_kwargs(staged_targets(inputs, "{{ params.start }}", "{{ params.end }}"))
    parity = ParityCheckOperator.partial(
        task_id="parity", sample_size="{{ params.sample_size }}", abs_tol="{{ params.abs_tol }}",
        rel_tol="{{ params.rel_tol }}", max_mismatch_ratio="{{ params.max_mismatch_ratio }}", retries=0,
    ).expand_kwargs(pairs(inputs))
    inputs >> apply >> materialize >> parity
