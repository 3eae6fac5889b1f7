"""Operators: plan, apply, materialize a version, promote, roll back, and check parity (DESIGN §12).

Each operator owns templating, XCom and Asset events, and calls :class:`FeatureStore` through
:class:`FeatureRegistryHook`; the rules live in the store. Times are templated strings (ISO 8601
with a zone) or datetimes; ``start``/``end`` default to the run's data interval. Use ``{{ run_id }}``
or the data interval in templates, not ``{{ ds }}``: manual runs in Airflow 3 have no logical date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, AssetAlias, BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException

from feature_rollout.core.errors import FeatureRolloutError, InvalidDefinitionError
from feature_rollout.core.refs import NAME_PATTERN
from feature_rollout.hooks.feature_registry import DEFAULT_CONN_ID, FeatureRegistryHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from feature_rollout.store import FeatureStore

#: Asset aliases the operators attach their events to; the URIs are known only at run time.
MATERIALIZATIONS = AssetAlias(name="feature-rollout-materializations")
PROMOTIONS = AssetAlias(name="feature-rollout-promotions")
LINK_XCOM_KEY = "feature_view"


def version_asset_uri(workspace: str, view: str, version: int) -> str:
    return f"feature-rollout://{workspace}/{view}/v{version}"


def view_asset_uri(workspace: str, view: str) -> str:
    return f"feature-rollout://{workspace}/{view}"


#: JSON-schema patterns for the ``Param``s of rollout DAGs, so that a bad name or time fails a run before
#: anything changes: a name as :func:`feature_rollout.core.refs.validate_name` accepts it, a time as
#: :func:`parse_time` does (a date, or a time with a zone), a version such as ``v2``.
NAME_PARAM_PATTERN = f"^{NAME_PATTERN.pattern}$"
TIME_PARAM_PATTERN = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$"
VERSION_PARAM_PATTERN = r"^(v|version)[0-9]{1,9}$"


def feature_view_path(workspace: str, view: str) -> str:
    """The UI plugin's page of a feature view (the format operators' extra links use)."""
    return f"/feature-rollout/workspaces/{quote(workspace, safe='')}/views/{quote(view, safe='')}"


def airflow_run_ref(context: Context) -> str:
    """``{dag_id}/{run_id}/{task_id}``: what the audit log and the ledger record as the run."""
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"


def emit_materialized(context: Context, workspace: str, view: str, version: int, rows_written: int,
                      start: datetime, end: datetime) -> None:
    """The asset event ``feature-rollout://{workspace}/{view}/v{N}`` with ``{rows_written, start, end}``."""
    extra: dict[str, Any] = {"rows_written": rows_written, "start": start.isoformat(), "end": end.isoformat()}
    context["outlet_events"][MATERIALIZATIONS].add(Asset(uri=version_asset_uri(workspace, view, version)),
                                                   extra=extra)


def parse_time(value: Any, what: str) -> datetime:
    """A templated time: an aware datetime, or an ISO 8601 string with a zone."""
    from feature_rollout.cli import parse_time as parse_text
    from feature_rollout.core.intervals import require_aware

    if isinstance(value, datetime):
        # Airflow hands over pendulum DateTimes; the data plane works with the standard library's.
        return datetime.fromisoformat(require_aware(value, what).isoformat())
    if isinstance(value, str):
        return parse_text(value.strip())
    raise InvalidDefinitionError(f"{what} must be an ISO 8601 time with a zone or a datetime, got {value!r}.")


class FeatureViewLink(BaseOperatorLink):
    """Links a task to the UI page of the feature view it touched."""

    name = "Feature view"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        target = XCom.get_value(ti_key=ti_key, key=LINK_XCOM_KEY)
        if not target:
            return ""
        return feature_view_path(target["workspace"], target["view"])


class FeatureRolloutOperator(BaseOperator):
    """Common parameters: the connection, and optionally the repo path and workspace it points at.

    :param feature_rollout_conn_id: an Airflow connection of type ``feature_rollout``.
    :param repo_path: the feature repo on the workers (default: the connection's ``repo_path`` extra).
    :param workspace: the workspace (default: the connection's, else the repo's project).
    """

    template_fields: Sequence[str] = ("repo_path", "workspace")
    ui_color = "#e8f4f8"

    def __init__(self, *, feature_rollout_conn_id: str = DEFAULT_CONN_ID, repo_path: str | None = None,
                 workspace: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_rollout_conn_id = feature_rollout_conn_id
        self.repo_path = repo_path
        self.workspace = workspace

    def get_store(self, context: Context) -> FeatureStore:
        hook = FeatureRegistryHook(self.feature_rollout_conn_id, repo_path=self.repo_path, workspace=self.workspace)
        store = hook.get_conn()
        dag_run = context["dag_run"]
        user = getattr(dag_run, "triggering_user_name", None)
        store.actor = f"airflow:{dag_run.dag_id}" + (f" ({user})" if user else "")
        return store

    @staticmethod
    def link_to(context: Context, store: FeatureStore, view: str, version: int | None = None) -> None:
        context["ti"].xcom_push(key=LINK_XCOM_KEY, value={"workspace": store.workspace, "view": view,
                                                           "version": version})


class FeatureStorePlanOperator(FeatureRolloutOperator):
    """Plan the repo against the registry, store the plan, and render it in the log.

    XCom ``return_value``: ``{"plan_id", "workspace", "base_revision", "has_changes", "summary", "plan"}``
    where ``plan`` is the stable plan JSON (docs/plan-json.md); the id also under the key ``plan_id``, so
    that ``FeatureStoreApplyOperator(plan_id=plan.output["plan_id"])`` works.

    :param no_promote: plan new versions as staged.
    :param suppress_recreates: turn recreates that keep the served schema into in-place updates.
    """

    template_fields: Sequence[str] = (*FeatureRolloutOperator.template_fields, "no_promote", "suppress_recreates")

    def __init__(self, *, no_promote: bool = False, suppress_recreates: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.no_promote = no_promote
        self.suppress_recreates = suppress_recreates

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.get_store(context)
        plan = store.plan(no_promote=_flag(self.no_promote), suppress_recreates=_flag(self.suppress_recreates))
        self.log.info("%s", plan.render())
        context["ti"].xcom_push(key="plan_id", value=plan.id)
        return {"plan_id": plan.id, "workspace": plan.workspace, "base_revision": plan.base_revision,
                "has_changes": plan.has_changes, "summary": plan.summary, "plan": plan.to_json()}


class FeatureStoreApplyOperator(FeatureRolloutOperator):
    """Apply a stored plan exactly (``plan_id``, templated or an XComArg), or plan and apply in one step.

    XCom ``return_value``: the apply result (``plan_id``, ``revision``, ``applied``, ``created_versions``,
    ``promoted``, ``held``) plus ``staged``: every staged version of the workspace after the apply.
    A stale plan fails the task without retrying: applying it again cannot succeed.

    :param plan_id: the id a :class:`FeatureStorePlanOperator` returned; ``None`` to plan and apply.
    :param no_promote: stage new versions without serving them.
    """

    template_fields: Sequence[str] = (*FeatureRolloutOperator.template_fields, "plan_id", "no_promote")

    def __init__(self, *, plan_id: str | None = None, no_promote: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan_id = plan_id
        self.no_promote = no_promote

    def execute(self, context: Context) -> dict[str, Any]:
        from feature_rollout.core.errors import StalePlanError

        store = self.get_store(context)
        plan_id = self.plan_id or None
        run_ref = airflow_run_ref(context)
        try:
            result = store.apply(plan_id=plan_id, no_promote=_flag(self.no_promote), run_id=run_ref)
        except StalePlanError as err:
            # An earlier try of this very task may have committed the apply and died before Airflow
            # heard of it: that is success, not a stale plan (the registry records who applied it).
            earlier = store.registry.applied_result(plan_id, store.workspace) \
                if plan_id and err.already_applied else None
            if earlier is None or earlier[0].run_id != run_ref:
                raise AirflowFailException(str(err)) from None
            self.log.warning("Plan %s was already applied by an earlier try of this task (%s); not applying it "
                             "again.", plan_id, run_ref)
            result = earlier[1]
        if result.plan is not None:
            self.log.info("%s", result.plan.render())
        self.log.info("Applied plan %s: workspace %s at revision %s", result.plan_id, result.workspace,
                      result.revision)
        staged = [{"view": v.name, "version": n.number}
                  for v in store.registry.load_state(store.workspace).live_views().values()
                  for n in v.versions if n.state.value == "staged"]
        return {**result.to_dict(), "staged": staged}


class MaterializeVersionOperator(FeatureRolloutOperator):
    """Materialize one version of one view over ``[start, end)`` (default: the run's data interval).

    Made for ``.partial(...).expand_kwargs(chunks)`` over chunks computed at run time. Emits an Asset
    event ``feature-rollout://{workspace}/{view}/v{N}`` with ``{rows_written, start, end}``.

    :param view: the feature view.
    :param version: ``"v2"``/``2``, or ``None`` for the active version.
    :param start: interval start (templated; ISO 8601 with a zone).
    :param end: interval end (templated).
    :param emit_asset_event: emit the version's asset event. Parallel chunks of one version should not
        all emit it: Airflow 3.3 fails a task whose first event of a new asset races another's (ADR 0009);
        ``rollout_task_group`` emits one event per version after its chunks instead.
    """

    template_fields: Sequence[str] = (*FeatureRolloutOperator.template_fields, "view", "version", "start", "end")
    operator_extra_links = (FeatureViewLink(),)

    def __init__(self, *, view: str, version: int | str | None = None, start: Any = None, end: Any = None,
                 emit_asset_event: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [MATERIALIZATIONS] if emit_asset_event else [])
        super().__init__(**kwargs)
        self.view = view
        self.version = version
        self.start = start
        self.end = end
        self.emit_asset_event = emit_asset_event

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.get_store(context)
        start = parse_time(self.start if self.start is not None else context.get("data_interval_start"), "start")
        end = parse_time(self.end if self.end is not None else context.get("data_interval_end"), "end")
        version = None if self.version in (None, "", "active") else self.version
        if version is None:
            version = store.registry.get_version(store.workspace, self.view)[1].number
        self.link_to(context, store, self.view, None)

        def progress(p: Any) -> None:
            self.log.info("%s v%s: chunk %s, %s rows upserted (%s changed) of %s read, %.1fs", p.view, p.version,
                          p.chunks, p.rows_upserted, p.rows_written, p.rows_read, p.seconds)

        [result] = store.materialize(start, end, [self.view], version=version, run_id=airflow_run_ref(context),
                                     progress=progress)
        if self.emit_asset_event:
            emit_materialized(context, store.workspace, self.view, result.version, result.rows_written,
                              result.start, result.end)
        return result.to_dict()


class PromoteVersionOperator(FeatureRolloutOperator):
    """Promote a version (gated by default: readiness and a passing parity report).

    Emits an Asset event ``feature-rollout://{workspace}/{view}`` with ``{version}``. A failed gate fails
    the task without retrying.

    :param view: the feature view.
    :param version: the version to promote (templated).
    :param require_gates: check readiness and parity in the promote transaction.
    :param reason: recorded in the audit log (templated).
    """

    template_fields: Sequence[str] = (*FeatureRolloutOperator.template_fields, "view", "version", "reason",
                                      "require_gates")
    operator_extra_links = (FeatureViewLink(),)

    def __init__(self, *, view: str, version: int | str, require_gates: bool = True, reason: str | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [PROMOTIONS])
        super().__init__(**kwargs)
        self.view = view
        self.version = version
        self.require_gates = require_gates
        self.reason = reason

    def execute(self, context: Context) -> dict[str, Any]:
        from feature_rollout.core.errors import GateCheckFailed, PromotionConflict, VersionHeldError

        store = self.get_store(context)
        self.link_to(context, store, self.view)
        try:
            move = store.promote(self.view, self.version, require_gates=_flag(self.require_gates),
                                 reason=self.reason or None, run_id=airflow_run_ref(context))
        except (GateCheckFailed, VersionHeldError, PromotionConflict) as err:
            raise AirflowFailException(str(err)) from None
        self.log.info("Promoted %s: v%s -> v%s", self.view, move.from_version, move.to_version)
        context["outlet_events"][PROMOTIONS].add(Asset(uri=view_asset_uri(store.workspace, self.view)),
                                                 extra={"version": move.to_version})
        return {"view": move.name, "from_version": move.from_version, "to_version": move.to_version,
                "noop": move.is_noop}


class RollbackVersionOperator(FeatureRolloutOperator):
    """Roll a view back to its previous version (or ``to``) and hold the current one.

    Emits the promotion Asset event of the view with the version now active. A bad target (no previous
    version, an unknown one) fails the task without retry.

    :param view: the feature view (templated).
    :param to: the version to go back to (``"v1"``/``1``, templated); default the one active before.
    :param reason: recorded in the audit log and on the hold (templated).
    """

    template_fields: Sequence[str] = (*FeatureRolloutOperator.template_fields, "view", "to", "reason")
    operator_extra_links = (FeatureViewLink(),)

    def __init__(self, *, view: str, to: int | str | None = None, reason: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [PROMOTIONS])
        super().__init__(**kwargs)
        self.view = view
        self.to = to
        self.reason = reason

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.get_store(context)
        self.link_to(context, store, self.view)
        to = self.to if self.to not in (None, "") else None
        try:
            move = store.rollback(self.view, to=to, reason=self.reason or None, run_id=airflow_run_ref(context))
        except FeatureRolloutError as err:
            raise AirflowFailException(str(err)) from None
        self.log.info("Rolled back %s: v%s -> v%s (v%s held)", self.view, move.from_version, move.to_version,
                      move.from_version)
        context["outlet_events"][PROMOTIONS].add(Asset(uri=view_asset_uri(store.workspace, self.view)),
                                                 extra={"version": move.to_version})
        return {"view": move.name, "from_version": move.from_version, "to_version": move.to_version}


class ParityCheckOperator(FeatureRolloutOperator):
    """Compare a candidate with a baseline on one spine and store the report.

    A failed report fails the task **without retry** (the data will not change by retrying). XCom
    ``return_value``: the report as a dict (``id``, ``passed``, ``rows_compared``, ``mismatches``, ...).

    :param baseline: e.g. ``"driver_stats@v1"`` or ``"prod/driver_stats"`` (templated).
    :param candidate: e.g. ``"driver_stats@v2"`` or ``"staging/driver_stats"`` (templated).
    :param spine: a Parquet path, or ``"sha256:<digest>"`` of a stored spine; default a seeded sample.
    :param columns: the features to compare: names present on both sides, or ``{baseline: candidate}``
        pairs for renamed ones; default every feature the two have in common.
    :param abs_tol: absolute tolerance for numeric values.
    :param rel_tol: relative tolerance for numeric values.
    :param max_mismatch_ratio: share of spine rows allowed to differ for the report to pass.
    :param sample_size: rows of the sampled spine (when no ``spine`` is given).
    :param seed: the sample's seed; the same seed on the same data gives the same spine.
    """

    template_fields: Sequence[str] = (*FeatureRolloutOperator.template_fields, "baseline", "candidate", "spine",
                                      "columns", "abs_tol", "rel_tol", "max_mismatch_ratio", "sample_size", "seed")
    operator_extra_links = (FeatureViewLink(),)

    def __init__(self, *, baseline: str, candidate: str, spine: str | None = None,
                 columns: Mapping[str, str] | Sequence[str] | None = None, abs_tol: float = 0.0,
                 rel_tol: float = 0.0, max_mismatch_ratio: float = 0.0, sample_size: int = 1000, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.baseline = baseline
        self.candidate = candidate
        self.spine = spine
        self.columns = columns
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol
        self.max_mismatch_ratio = max_mismatch_ratio
        self.sample_size = sample_size
        self.seed = seed

    def execute(self, context: Context) -> dict[str, Any]:
        from feature_rollout.core.refs import parse_view_ref

        store = self.get_store(context)
        candidate = parse_view_ref(self.candidate)
        target = store._in_workspace(candidate.workspace) if candidate.workspace else store
        self.link_to(context, target, candidate.view, candidate.version)
        baseline = parse_view_ref(self.baseline)
        base_store = store._in_workspace(baseline.workspace) if baseline.workspace else store
        if baseline.version is None and base_store.registry.get_view(base_store.workspace,
                                                                     baseline.view).active_version is None:
            # A view's first version has nothing to be on par with; the promotion gate knows that too.
            self.log.info("%s has no active version yet: nothing to compare %s with.", self.baseline, self.candidate)
            return {"passed": True, "skipped": f"{self.baseline} has no active version"}
        report = store.parity(self.baseline, self.candidate, self.spine or None, columns=self.columns or None,
                              abs_tol=float(self.abs_tol), rel_tol=float(self.rel_tol),
                              max_mismatch_ratio=float(self.max_mismatch_ratio), sample_size=int(self.sample_size),
                              seed=int(self.seed), run_id=airflow_run_ref(context))
        self.log.info("%s", report.render())
        if not report.passed:
            raise AirflowFailException(
                f"Parity failed: {report.mismatched_rows} of {report.rows_compared} rows of {report.candidate} differ "
                f"from {report.baseline} (report #{report.id}); the rollout stops here."
            )
        return report.to_dict()


def _flag(value: Any) -> bool:
    """Template-rendered booleans arrive as strings ("True"/"false") when the template is a string."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
