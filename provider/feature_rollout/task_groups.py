"""``rollout_task_group``: the standard rollout as one TaskGroup (DESIGN §1, §12).

::

    check_inputs -> plan -> apply --no-promote -> candidates -> chunks -> materialize[*] -> populated[*]
        -> parity[*] -> gate[*] -> promote[*]                      populated[*] -> materialized[*] (asset events)

Everything that depends on the registry is decided at run time: which versions the apply staged,
and the backfill chunks, are computed by tasks and fanned out with dynamic task mapping. Nothing
reads the registry while the DAG file is parsed. Inputs (views, interval, chunk size) are checked
by the first task, before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup, task

from feature_rollout.hooks.feature_registry import DEFAULT_CONN_ID
from feature_rollout.operators.feature_rollout import (
    MATERIALIZATIONS,
    PROMOTIONS,
    FeatureStoreApplyOperator,
    FeatureStorePlanOperator,
    MaterializeVersionOperator,
    ParityCheckOperator,
    PromoteVersionOperator,
)
from feature_rollout.sensors.feature_rollout import PromotionGateSensor, VersionPopulatedSensor


def parse_views(value: Any) -> list[str]:
    """Views from a list, a comma-separated string, or a rendered template of either."""
    if value in (None, "", "None"):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            value = json.loads(text.replace("'", '"'))
        else:
            value = [v for v in text.split(",")]
    return [str(v).strip() for v in value if str(v).strip()]


def _hours(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    hours = float(value)
    if hours <= 0:
        from feature_rollout.core.errors import InvalidDefinitionError

        raise InvalidDefinitionError(f"The chunk size must be a positive number of hours, got {value!r}.")
    return timedelta(hours=hours)


def rollout_task_group(
    group_id: str = "rollout",
    *,
    views: Sequence[str] | str | None = None,
    start: Any = None,
    end: Any = None,
    chunk_hours: float | str = 24,
    promote: bool | str = True,
    spine: str | None = None,
    sample_size: int | str = 1000,
    seed: int | str = 0,
    abs_tol: float | str = 0.0,
    rel_tol: float | str = 0.0,
    max_mismatch_ratio: float | str = 0.0,
    reason: str | None = None,
    feature_rollout_conn_id: str = DEFAULT_CONN_ID,
    repo_path: str | None = None,
    workspace: str | None = None,
    deferrable: bool | None = None,
    poke_interval: float = 30.0,
    sensor_timeout: float = 6 * 3600,
) -> TaskGroup:
    """The whole rollout of staged versions as one TaskGroup.

    :param group_id: the TaskGroup's id (task ids are ``{group_id}.plan``, ``{group_id}.promote``, ...).
    :param views: views to roll out (a list, a comma-separated string, or a template such as
        ``"{{ params.views }}"``); empty: every view the apply gave a new version.
    :param start: start of the backfill (templated; ISO 8601 with a zone).
    :param end: end of the backfill (templated).
    :param chunk_hours: size of each mapped materialization (templated).
    :param promote: ``False`` stops after parity, leaving the versions staged (templated).
    :param spine: parity spine: a Parquet path or ``sha256:<digest>``; default a seeded sample.
    :param sample_size: rows of the sampled spine.
    :param seed: the seed of the sampled spine.
    :param abs_tol: absolute tolerance of the parity comparison.
    :param rel_tol: relative tolerance of the parity comparison.
    :param max_mismatch_ratio: share of spine rows allowed to differ.
    :param reason: recorded in the audit log with the promotion (default ``"rollout {{ run_id }}"``).
    :param feature_rollout_conn_id: the Airflow connection (type ``feature_rollout``).
    :param repo_path: the feature repo on the workers (default: the connection's ``repo_path`` extra).
    :param workspace: the workspace (default: the connection's, else the repo's project).
    :param deferrable: for the two sensors; default ``[operators] default_deferrable``.
    :param poke_interval: seconds between the sensors' checks.
    :param sensor_timeout: seconds the sensors wait before failing.
    """
    common: dict[str, Any] = {"feature_rollout_conn_id": feature_rollout_conn_id, "repo_path": repo_path,
                              "workspace": workspace}
    sensors: dict[str, Any] = {**common, "poke_interval": poke_interval, "timeout": sensor_timeout}
    if deferrable is not None:
        sensors["deferrable"] = deferrable

    with TaskGroup(group_id=group_id) as group:

        @task(task_id="check_inputs")
        def check_inputs(views: Any, start: Any, end: Any, chunk_hours: Any) -> dict[str, Any]:
            """Fail the run before anything changes when an input is wrong."""
            from feature_rollout.core.intervals import interval
            from feature_rollout.core.refs import validate_name
            from feature_rollout.operators.feature_rollout import parse_time

            names = [validate_name(v, "feature view") for v in parse_views(views)]
            window = interval(parse_time(start, "start"), parse_time(end, "end"))
            _hours(chunk_hours)
            return {"views": names, "start": window.start.isoformat(), "end": window.end.isoformat()}

        @task(task_id="candidates")
        def candidates(applied: Any, inputs: Any) -> list[dict[str, Any]]:
            """The version each view rolls out: the newest staged version of the chosen views (or of every
            view the apply gave a new version)."""
            wanted = inputs["views"] or sorted({c["view"] for c in applied["created_versions"]})
            newest: dict[str, int] = {}
            for staged in applied["staged"]:
                newest[staged["view"]] = max(staged["version"], newest.get(staged["view"], -1))
            missing = [v for v in wanted if v not in newest]
            if missing:
                import logging

                logging.getLogger(__name__).warning("No staged version to roll out for %s", ", ".join(missing))
            return [{"view": v, "version": newest[v], "start": inputs["start"], "end": inputs["end"]}
                    for v in wanted if v in newest]

        @task(task_id="chunks")
        def chunks(targets: Any, chunk_hours: Any) -> list[dict[str, Any]]:
            from datetime import datetime

            from feature_rollout.core.intervals import Interval
            from feature_rollout.core.intervals import chunks as cut

            pieces = []
            for target in targets:
                window = Interval(datetime.fromisoformat(target["start"]), datetime.fromisoformat(target["end"]))
                pieces += [{"view": target["view"], "version": target["version"], "start": p.start.isoformat(),
                            "end": p.end.isoformat()} for p in cut(window, _hours(chunk_hours))]
            return pieces

        @task(task_id="parity_pairs")
        def parity_pairs(targets: Any) -> list[dict[str, Any]]:
            return [{"baseline": t["view"], "candidate": f"{t['view']}@v{t['version']}"} for t in targets]

        @task(task_id="promotions")
        def promotions(targets: Any) -> list[dict[str, Any]]:
            return [{"view": t["view"], "version": t["version"]} for t in targets]

        @task(task_id="materialized", outlets=[MATERIALIZATIONS])
        def materialized(target: Any, **context: Any) -> dict[str, Any]:
            """One asset event per version, once its chunks are in (parallel chunks do not emit it)."""
            from datetime import datetime

            from feature_rollout.hooks.feature_registry import FeatureRegistryHook
            from feature_rollout.operators.feature_rollout import emit_materialized

            store = FeatureRegistryHook(feature_rollout_conn_id, repo_path=repo_path, workspace=workspace).get_conn()
            ti = context["ti"]
            prefix = f"{ti.dag_id}/{ti.run_id}/"
            runs = [r for r in store.ledger.runs(store.workspace, target["view"], target["version"])
                    if r["status"] == "succeeded" and (r["run_id"] or "").startswith(prefix)]
            rows = sum(r["rows_written"] for r in runs)
            emit_materialized(context, store.workspace, target["view"], target["version"], rows,  # type: ignore[arg-type]
                              datetime.fromisoformat(target["start"]), datetime.fromisoformat(target["end"]))
            return {"view": target["view"], "version": target["version"], "rows_written": rows, "runs": len(runs)}

        inputs = check_inputs(views, start, end, chunk_hours)
        plan = FeatureStorePlanOperator(task_id="plan", no_promote=True, **common)
        plan_id: Any = plan.output["plan_id"]  # type: ignore[index]  # an XComArg, resolved at run time
        apply = FeatureStoreApplyOperator(task_id="apply", plan_id=plan_id, no_promote=True, **common)
        targets = candidates(apply.output, inputs)
        materialize = MaterializeVersionOperator.partial(
            task_id="materialize", emit_asset_event=False, outlets=[], **common,
        ).expand_kwargs(chunks(targets, chunk_hours))
        populated = VersionPopulatedSensor.partial(task_id="populated", **sensors).expand_kwargs(targets)
        parity = ParityCheckOperator.partial(
            task_id="parity", spine=spine, sample_size=sample_size, seed=seed, abs_tol=abs_tol, rel_tol=rel_tol,
            max_mismatch_ratio=max_mismatch_ratio, retries=0, **common).expand_kwargs(parity_pairs(targets))
        gate = PromotionGateSensor.partial(task_id="gate", **sensors).expand_kwargs(targets)
        promoted = PromoteVersionOperator.partial(
            task_id="promote", outlets=[PROMOTIONS], reason=reason or "rollout {{ run_id }}", **common,
        ).expand_kwargs(promotions(targets))

        @task.short_circuit(task_id="promote_or_stop", ignore_downstream_trigger_rules=False)
        def promote_or_stop(promote: Any) -> bool:
            """``promote=False`` leaves the versions staged after parity."""
            return str(promote).strip().lower() in ("1", "true", "yes", "on")

        decision = promote_or_stop(promote)
        inputs >> plan
        materialize >> populated >> parity >> decision >> gate >> promoted
        populated >> materialized.expand(target=targets)
    return group
