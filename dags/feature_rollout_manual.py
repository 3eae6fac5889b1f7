"""Manual rollout: plan, stage, backfill, wait until populated, check parity, pass the gate, promote.

Trigger it with the views to roll out and the backfill interval (Params are validated by Airflow at
trigger time, and again by the first task before anything changes). Uses the connection
``feature_rollout_default`` (its ``repo_path`` extra points at the feature repo).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from feature_rollout.operators.feature_rollout import NAME_PARAM_PATTERN, TIME_PARAM_PATTERN
from feature_rollout.task_groups import rollout_task_group

with DAG(
    dag_id="feature_rollout_manual",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["feature-rollout"],
    doc_md=__doc__,
    params={
        "views": Param([], type="array", items={"type": "string", "pattern": NAME_PARAM_PATTERN},
                       description="Views to roll out; empty: every view the apply gives a new version."),
        "start": Param(type="string", pattern=TIME_PARAM_PATTERN,
                       description="Backfill start, ISO 8601 with a zone (or a date)."),
        "end": Param(type="string", pattern=TIME_PARAM_PATTERN,
                     description="Backfill end, ISO 8601 with a zone (or a date)."),
        "chunk_hours": Param(24, type="number", exclusiveMinimum=0, description="Hours per mapped backfill task."),
        "promote": Param(True, type="boolean", description="False: stop after parity, leaving versions staged."),
        "spine": Param(None, type=["null", "string"], description="Parquet path or sha256:<digest>; default: sample."),
        "sample_size": Param(1000, type="integer", minimum=1),
        "seed": Param(0, type="integer"),
        "abs_tol": Param(0.0, type="number", minimum=0),
        "rel_tol": Param(0.0, type="number", minimum=0),
        "max_mismatch_ratio": Param(0.0, type="number", minimum=0, maximum=1),
    },
) as dag:
    rollout = rollout_task_group(
        views="{{ params.views }}",
        start="{{ params.start }}",
        end="{{ params.end }}",
        chunk_hours="{{ params.chunk_hours }}",
        promote="{{ params.promote }}",
        spine="{{ params.spine or '' }}",
        sample_size="{{ params.sample_size }}",
        seed="{{ params.seed }}",
        abs_tol="{{ params.abs_tol }}",
        rel_tol="{{ params.rel_tol }}",
        max_mismatch_ratio="{{ params.max_mismatch_ratio }}",
        reason="manual rollout {{ run_id }}",
    )

    @task(trigger_rule="all_done")
    def report(**context: object) -> dict[str, object]:
        """Print what the rollout did: the plan, the version history, coverage and parity."""
        from feature_rollout.hooks.feature_registry import FeatureRegistryHook

        ti = context["ti"]
        plan = ti.xcom_pull(task_ids="rollout.plan") or {}
        store = FeatureRegistryHook().get_conn()
        print(f"== Plan {plan.get('plan_id')} ==")
        print("\n".join(f"  {c['kind']:<16} {c['object_type']:<16} {c['name']}"
                        + (f" v{c['to_version']}" if c.get("to_version") is not None else "")
                        for c in plan.get("plan", {}).get("changes", [])))
        summary = {}
        for view in store.list_feature_views():
            status = store.status(view.name)
            summary[view.name] = status
            print(f"== Versions of {view.name} (active v{status['active_version']}) ==")
            for v in status["versions"]:
                covered = ", ".join(f"[{c['start']}, {c['end']})" for c in v["coverage"]) or "-"
                rows = "table missing" if v.get("table_missing") else v["online_rows"]
                print(f"  {v['version']:<4} {v['state']:<8} rows online: {rows}; covered: {covered}")
            for r in status["parity_reports"][:1]:
                print(f"== Parity report #{r['id']}: {'PASSED' if r['passed'] else 'FAILED'} "
                      f"{r['candidate']} vs {r['baseline']}, {r['mismatched_rows']}/{r['rows_compared']} rows differ")
        return {"plan_id": plan.get("plan_id"), "views": sorted(summary)}

    @task(trigger_rule="one_failed", retries=0)
    def fail_the_run() -> None:
        """`report` runs whatever happened, and a run's state follows its last tasks: without this, a failed
        rollout would end in a successful run."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("A task of the rollout failed; see it for why. Nothing after it ran.")

    rollout >> [report(), fail_the_run()]
