"""``FeatureStore``: the public Python API (DESIGN §4). It composes the pure core, the registry and
(with the data plane) the offline and online stores; it holds no rules of its own."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_rollout.config import RepoConfig, load_config
from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, FileSource
from feature_rollout.core.errors import (
    EntityKeyError,
    FeatureViewVersionNotFound,
    GateCheckFailed,
    InvalidDefinitionError,
    InvalidVersionError,
    ObjectNotFound,
    OnlineTableMissing,
    SchemaMismatchError,
    SourceNotFoundError,
    WorkspaceNotFound,
)
from feature_rollout.core.fingerprint import VIEW_METADATA_KEYS
from feature_rollout.core.intervals import Interval, interval, require_aware
from feature_rollout.core.plan import ChangeKind, DesiredState, ObjectType, Plan, PlanOptions, collect
from feature_rollout.core.plan import plan as compute_plan
from feature_rollout.core.promotion import PointerMove
from feature_rollout.core.refs import ViewRef, parse_version, parse_view_ref, validate_name
from feature_rollout.core.state import Hold, ObjectRecord, VersionRecord, VersionState, ViewRecord, WorkspaceState
from feature_rollout.registry import ApplyResult, Registry
from feature_rollout.repo import load_definitions

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from feature_rollout.gates import Readiness
    from feature_rollout.materialize import MaterializationResult, Progress
    from feature_rollout.online.base import OnlineStore, OnlineTable
    from feature_rollout.parity import ParityReport
    from feature_rollout.reads import OnlineResponse, RetrievalJob
    from feature_rollout.registry.ledger import Ledger

SpineInput = "pd.DataFrame | pa.Table | str | os.PathLike[str]"


def default_actor() -> str:
    """Who is acting, for the audit log: ``$FEATURE_ROLLOUT_ACTOR``, else the OS user."""
    actor = os.environ.get("FEATURE_ROLLOUT_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def version_number(version: int | str, what: str = "version") -> int:
    """``2``, ``"v2"`` or ``"version2"`` -> ``2``; ``"latest"`` is not a version number here."""
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise InvalidVersionError(f"{version!r} is not a valid {what}: use 'vN' (for example 'v2').")
    if isinstance(version, int):
        if version < 0:
            raise InvalidVersionError(f"The {what} {version!r} is negative; versions start at v0.")
        return version
    number = parse_version(version, what)
    if number is None:
        raise InvalidVersionError(f"The {what} must name a version such as 'v2', not 'latest'.")
    return number


class FeatureStore:
    """A feature repo and its registry.

    :param repo_path: the folder with ``feature_store.yaml`` and the definition files.
    :param workspace: the workspace to work in; defaults to the ``project`` of ``feature_store.yaml``.
    :param config: a :class:`RepoConfig` or a mapping shaped like ``feature_store.yaml``, instead of the file.
    """

    def __init__(self, repo_path: str | os.PathLike[str] = ".", workspace: str | None = None,
                 config: RepoConfig | Mapping[str, Any] | None = None) -> None:
        self.config = load_config(repo_path, config)
        self.repo_path: Path = self.config.repo_path
        self.workspace = validate_name(workspace, "workspace") if workspace else self.config.project
        self._registry: Registry | None = None
        self._online: OnlineStore | None = None
        self._read_state: WorkspaceState | None = None
        #: Who is acting, for the audit log; default ``$FEATURE_ROLLOUT_ACTOR`` or the OS user. The
        #: Airflow operators set it to the DAG and the user who triggered the run.
        self.actor: str | None = None

    def __repr__(self) -> str:
        return f"FeatureStore(repo_path={str(self.repo_path)!r}, workspace={self.workspace!r})"

    def _actor(self) -> str:
        return self.actor or default_actor()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.config.registry_url, pool=self.config.registry_pool)
        return self._registry

    @property
    def project(self) -> str:
        return self.config.project

    @property
    def online_store(self) -> OnlineStore:
        """The configured online store (opened on first use; no I/O before)."""
        if self._online is None:
            from feature_rollout.online import open_online_store

            self._online = open_online_store(self.config.online_store)
        return self._online

    @property
    def ledger(self) -> Ledger:
        from feature_rollout.registry.ledger import Ledger

        return Ledger(self.registry)

    def _in_workspace(self, workspace: str) -> FeatureStore:
        """The same repo, registry and online store, in another workspace."""
        if workspace == self.workspace:
            return self
        other = FeatureStore(self.repo_path, workspace=workspace, config=self.config)
        other._registry, other._online, other.actor = self._registry, self._online, self.actor
        return other

    # --- plan and apply (§7) ----------------------------------------------------------------------

    def _desired(self, objects: Iterable[object] | None, objects_to_delete: Iterable[object] | None,
                 partial: bool | None) -> tuple[DesiredState, bool]:
        if objects is None:
            if objects_to_delete:
                raise InvalidDefinitionError("objects_to_delete needs objects=...; without objects the repo is "
                                             "the whole desired state, so remove the definitions from it instead.")
            desired, partial = collect(load_definitions(self.repo_path)), bool(partial)
        else:
            # As in Feast, objects passed explicitly are added or updated; nothing else is deleted unless
            # listed in objects_to_delete, or partial=False makes them the whole desired state.
            desired, partial = collect(objects, objects_to_delete or ()), True if partial is None else partial
        return self._with_inferred_key_types(desired), partial

    def _with_inferred_key_types(self, desired: DesiredState) -> DesiredState:
        """Join keys typed nowhere get the type of their column in the source (as Feast infers them), so
        that every version's online table has typed keys. This reads Parquet footers only."""
        from feature_rollout.core.plan import untyped_join_keys, with_key_types

        if not desired.feature_views:
            return desired
        needs_registry = any(e not in desired.entities or spec["source"] not in desired.data_sources
                             for spec in desired.feature_views.values() for e in spec["entities"])
        state = self.registry.load_state(self.workspace) if needs_registry else WorkspaceState(self.workspace)
        untyped = untyped_join_keys(state, desired)
        if not untyped:
            return desired
        from feature_rollout.arrow_types import feature_type_of
        from feature_rollout.offline import open_dataset

        inferred: dict[str, dict[str, str]] = {}
        for view, keys in untyped.items():
            spec = desired.feature_views[view]
            source = desired.data_sources.get(spec["source"]) or state.data_sources[spec["source"]].spec
            try:
                schema = open_dataset(source, self.repo_path).schema
            except SourceNotFoundError as err:
                raise SourceNotFoundError(
                    f"{err} The type of join key(s) {', '.join(keys)} of feature view '{view}' is declared nowhere "
                    f"and is read from the source; declare it with Field(name='{keys[0]}', dtype=Int64) (or the "
                    "entity's value_type), or make the source readable."
                ) from None
            renamed = {target: column for column, target in source.get("field_mapping", {}).items()}
            types = {}
            for key in keys:
                column = renamed.get(key, key)
                if column not in schema.names:
                    raise SchemaMismatchError(
                        f"Join key '{key}' of feature view '{view}' is not a column of its source "
                        f"{source['path']} (columns: {', '.join(schema.names)}). Fix the source or field_mapping."
                    )
                dtype = feature_type_of(schema.field(column).type)
                if dtype is None:
                    raise SchemaMismatchError(
                        f"Join key '{key}' of feature view '{view}' has the unsupported type "
                        f"{schema.field(column).type} in {source['path']}."
                    )
                types[key] = dtype
            inferred[view] = types
        return with_key_types(desired, inferred)

    def plan(self, objects: Iterable[object] | None = None, *, no_promote: bool = False,
             suppress_recreates: bool = False, partial: bool | None = None,
             objects_to_delete: Iterable[object] | None = None) -> Plan:
        """Diff the repo (or ``objects``) against the registry, store the plan and return it.

        :param objects: definitions to plan; by default every definition in the repo (and objects
            missing from the repo are deleted).
        :param no_promote: stage new versions without serving them.
        :param suppress_recreates: turn recreates that keep the served schema into in-place updates.
        :param partial: with ``objects``, whether objects not listed are kept (default ``True``).
        :param objects_to_delete: with ``objects``, definitions to delete.
        """
        desired, partial = self._desired(objects, objects_to_delete, partial)
        options = PlanOptions(no_promote=no_promote, suppress_recreates=suppress_recreates, partial=partial)
        state = self.registry.load_state(self.workspace)
        self._require_workspace(state.exists)
        result = compute_plan(state, desired, options)
        self.registry.save_plan(result, actor=self._actor())
        return result

    def apply(self, objects: Iterable[object] | None = None, *, plan_id: str | None = None,
              no_promote: bool = False, suppress_recreates: bool = False, partial: bool | None = None,
              objects_to_delete: Iterable[object] | None = None, run_id: str | None = None) -> ApplyResult:
        """Apply the stored plan ``plan_id`` exactly, or plan and apply in one transaction.

        :param objects: the definitions to apply (default: the repo's Python files); not with ``plan_id``.
        :param plan_id: a plan :meth:`plan` stored; applied exactly as stored, or not at all.
        :param no_promote: stage new versions without serving them (``apply --no-promote``).
        :param suppress_recreates: turn recreates that can be done in place into in-place updates.
        :param partial: plan only the given objects, leaving the others alone (default: when ``objects``
            is given).
        :param objects_to_delete: objects to remove (protection rules apply in live workspaces).
        :param run_id: recorded with the plan and the audit rows (the operators pass
            ``{dag_id}/{run_id}/{task_id}``).
        :raises StalePlanError: the workspace changed since ``plan_id`` was made; nothing was applied.
        :raises PreventDestroyError: the plan deletes or recreates a protected object in a live workspace.
        """
        actor = self._actor()
        if plan_id is not None:
            if objects is not None or objects_to_delete is not None:
                raise InvalidDefinitionError("Pass either plan_id or objects to apply, not both: a stored plan "
                                             "already says what to change.")
            stored = self.registry.get_plan(plan_id, self.workspace).plan
            for option, wanted in (("no_promote", no_promote), ("suppress_recreates", suppress_recreates)):
                if wanted and not getattr(stored.options, option):
                    raise InvalidDefinitionError(
                        f"Plan {plan_id} was made without {option.replace('_', '-')}; make a new plan with it.")
            plan, result = self.registry.apply(plan_id, self.workspace, actor=actor, run_id=run_id,
                                               before_commit=self._before_commit)
        else:
            desired, partial = self._desired(objects, objects_to_delete, partial)
            options = PlanOptions(no_promote=no_promote, suppress_recreates=suppress_recreates, partial=partial)
            plan, result = self.registry.plan_and_apply(
                self.workspace, desired, options, actor=actor, run_id=run_id, before_commit=self._before_commit,
                must_exist=self.workspace != self.project)
        return replace(result, plan=plan)

    def _before_commit(self, plan: Plan) -> None:
        """Runs inside the apply transaction: every new version gets its online table before the version
        exists (a failure here rolls the apply back; a table left by a rolled-back apply is harmless, as
        creating it again is a no-op)."""
        from feature_rollout.online.base import OnlineTable

        for change in plan.changes:
            if change.object_type is ObjectType.FEATURE_VIEW and change.kind in (ChangeKind.CREATE,
                                                                                ChangeKind.NEW_VERSION):
                assert change.online_table is not None and change.spec is not None
                self.online_store.create_table(OnlineTable.from_version_spec(change.online_table, change.spec))

    def _require_workspace(self, exists: bool) -> None:
        # The repo's own workspace (its `project`) is created, live, by its first apply; others are created
        # on purpose with `feature-rollout workspace create`.
        if not exists and self.workspace != self.project:
            raise WorkspaceNotFound(self.workspace)

    # --- definitions ------------------------------------------------------------------------------

    def list_entities(self) -> list[Entity]:
        state = self.registry.load_state(self.workspace)
        return [Entity.from_spec(r.spec) for _, r in sorted(state.entities.items())]

    def list_data_sources(self) -> list[FileSource]:
        state = self.registry.load_state(self.workspace)
        return [FileSource.from_spec(r.spec) for _, r in sorted(state.data_sources.items())]

    def list_feature_services(self) -> list[FeatureService]:
        state = self.registry.load_state(self.workspace)
        return [FeatureService.from_spec(r.spec) for _, r in sorted(state.feature_services.items())]

    def list_feature_views(self) -> list[FeatureView]:
        """The current definition of every view: its active version, or its newest if none is active yet."""
        state = self.registry.load_state(self.workspace)
        views = []
        for _, record in sorted(state.live_views().items()):
            version = record.active or max(record.versions, key=lambda v: v.number)
            views.append(_view_object(record, version, explicit=False))
        return views

    def get_entity(self, name: str) -> Entity:
        return Entity.from_spec(self._object("entity", self.registry.load_state(self.workspace).entities, name).spec)

    def get_data_source(self, name: str) -> FileSource:
        records = self.registry.load_state(self.workspace).data_sources
        return FileSource.from_spec(self._object("data source", records, name).spec)

    def get_feature_service(self, name: str) -> FeatureService:
        records = self.registry.load_state(self.workspace).feature_services
        return FeatureService.from_spec(self._object("feature service", records, name).spec)

    def _object(self, what: str, records: Mapping[str, ObjectRecord], name: str) -> ObjectRecord:
        record = records.get(name)
        if record is None:
            raise ObjectNotFound(f"No {what} named '{name}' in workspace '{self.workspace}'.")
        return record

    def get_feature_view(self, name: str, version: int | str | None = None) -> FeatureView:
        """The active definition of ``name``, or the snapshot of ``version`` (``"v2"`` or ``2``)."""
        number = None if version is None or version == "latest" else version_number(version)
        record, snapshot = self.registry.get_version(self.workspace, name, number)
        return _view_object(record, snapshot, explicit=number is not None)

    def list_feature_view_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``: ``version``, ``version_number``, ``feature_view_name``,
        ``created_timestamp``, ``version_id``, ``state``, ``schema_hash`` (and ``online_table``)."""
        return self.registry.list_versions(self.workspace, name)

    def history(self, name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The audit log (promotions, pins, rollbacks, holds, releases, deletions), newest first."""
        return self.registry.audit_log(self.workspace, name, limit)

    # --- promotion, rollback, holds (§11) ---------------------------------------------------------

    def promote(self, name: str, version: int | str, *, require_gates: bool = True, reason: str | None = None,
                run_id: str | None = None) -> PointerMove:
        """Make ``version`` the active version of ``name`` (compare-and-swap, audited).

        :param require_gates: re-check readiness and the latest parity report in the same transaction.
        """
        number = version_number(version)
        gate_check = self._promotion_gates(name, number) if require_gates else None
        return self.registry.promote(self.workspace, name, number, actor=self._actor(), run_id=run_id,
                                     reason=reason, gate_check=gate_check)

    def _promotion_gates(self, name: str, number: int) -> Any:
        """Check readiness now (it reads data), and return the check the promote transaction repeats on
        registry facts that can change concurrently: ledger coverage and the latest parity report."""
        from feature_rollout.gates import require_coverage, require_parity, require_ready

        record, _ = self.registry.get_version(self.workspace, name, number)
        if record.active_version == number:
            return None
        window = self._promotion_window(record, number)
        require_ready(self.readiness(name, number, window.start, window.end))
        ledger = self.ledger

        def check(conn: Any, current: ViewRecord, candidate: VersionRecord) -> None:
            covered = ledger.coverage(self.workspace, name, number, conn=conn)
            require_coverage(name, number, covered, window)
            reports = ledger.parity_reports(self.workspace, name, candidate_version=number, limit=1, conn=conn)
            require_parity(self.workspace, name, number, current.active_version, reports)

        return check

    def _promotion_window(self, record: ViewRecord, number: int) -> Interval:
        """What the candidate must cover: the last contiguous interval the active version has materialized
        (the candidate's own, when nothing is active yet), at most the view's ttl before its end."""
        reference = record.active_version if record.active_version is not None else number
        covered = self.ledger.coverage(self.workspace, record.name, reference)
        if not covered:
            raise GateCheckFailed(
                f"Promotion gate: v{reference} of '{record.name}' has never been materialized, so there is no "
                f"interval to check v{number} against. Materialize it first (`feature-rollout materialize START END "
                f"--views {record.name} --version v{reference}`)."
            )
        last = covered[-1]
        ttl = record.metadata.get("ttl_seconds")
        start = max(last.start, last.end - timedelta(seconds=float(ttl))) if ttl else last.start
        return Interval(start, last.end)

    def rollback(self, name: str, *, to: int | str | None = None, reason: str | None = None,
                 run_id: str | None = None) -> PointerMove:
        """Promote the previous version of ``name`` (or ``to``) and hold the current one back from applies."""
        number = None if to is None else version_number(to, "rollback target")
        return self.registry.rollback(self.workspace, name, to=number, actor=self._actor(), run_id=run_id,
                                      reason=reason)

    def release_hold(self, name: str, *, reason: str | None = None, run_id: str | None = None) -> Hold | None:
        """Lift the rollback hold on ``name``; returns the lifted hold, or ``None`` if there was none."""
        return self.registry.release_hold(self.workspace, name, actor=self._actor(), run_id=run_id, reason=reason)

    # --- data plane (§9, §10) ------------------------------------------------------------------------

    def _state_for_reads(self) -> WorkspaceState:
        """The workspace state, reloaded only when its revision moved: online reads are hot, and every
        change that affects them (apply, promote, rollback, prune) advances the revision."""
        revision = self.registry.revision(self.workspace)
        cached = self._read_state
        if cached is None or revision is None or cached.revision != revision:
            cached = self._read_state = self.registry.load_state(self.workspace)
        return cached

    def online_table(self, record: VersionRecord) -> OnlineTable:
        from feature_rollout.online.base import OnlineTable

        return OnlineTable.from_version_spec(record.online_table, record.spec)

    def get_online_features(self, features: Sequence[str] | FeatureService,
                            entity_rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
                            full_feature_names: bool = False) -> OnlineResponse:
        """Latest materialized values for ``entity_rows`` (a list of ``{join_key: value}`` or a DataFrame).

        Refs may mix versions: ``["driver_stats:conv_rate", "driver_stats@v2:conv_rate"]``. Unknown entity
        keys give nulls. As in Feast, values are returned whatever their age.

        :param features: refs ``view:feature``, ``view@vN:feature``, ``view@latest:feature``, or a
            :class:`FeatureService`.
        :param entity_rows: one mapping of join keys per row, or a DataFrame of join-key columns.
        :param full_feature_names: name columns ``view__feature`` (``view@vN__feature`` for pinned refs).
        :returns: an :class:`OnlineResponse` (``.to_dict()``, ``.to_df()``), rows in the order given.
        """
        import pyarrow as pa

        from feature_rollout.reads import OnlineResponse, require_table, resolve

        groups = resolve(features, self._state_for_reads(), full_feature_names=full_feature_names)
        rows = _entity_rows(entity_rows)
        columns: dict[str, pa.Array | pa.ChunkedArray] = {}
        for group in groups:
            require_table(group)
            table = self.online_table(group.version)
            keys = _key_table(rows, table, group)
            for key in group.join_keys:
                columns.setdefault(key, keys.column(key))
            values = self.online_store.read(table, keys, [f for f, _ in group.features])
            for feature, output in group.features:
                columns[output] = values.column(feature)
        return OnlineResponse(pa.table(columns) if columns else pa.table({}))

    def get_historical_features(self, entity_df: pd.DataFrame | pa.Table, features: Sequence[str] | FeatureService,
                                full_feature_names: bool = False) -> RetrievalJob:
        """Point-in-time correct features for every row of ``entity_df`` (join keys + ``event_timestamp``),
        in spine order. ``@vN`` refs read that version's snapshot: its source and its schema.

        :param entity_df: the spine, pandas or Arrow; ``event_timestamp`` must carry a time zone.
        :param features: refs as in :meth:`get_online_features`, or a :class:`FeatureService`; two versions
            of one view need ``full_feature_names=True`` when their feature names collide.
        :param full_feature_names: name columns ``view__feature``.
        :returns: a :class:`RetrievalJob` (``.to_df()``, ``.to_arrow()``).
        """
        from feature_rollout.offline import FeatureRead, historical_features, normalize_spine
        from feature_rollout.reads import RetrievalJob, resolve

        groups = resolve(features, self.registry.load_state(self.workspace), full_feature_names=full_feature_names)
        spine = normalize_spine(entity_df)
        reads = [FeatureRead(dict(g.version.spec), tuple(g.features), g.ttl_seconds) for g in groups]
        return RetrievalJob(historical_features(spine, reads, self.repo_path))

    def _targets(self, feature_views: Sequence[str] | None, version: int | str | None,
                 include_staged: bool) -> list[tuple[ViewRecord, VersionRecord]]:
        state = self.registry.load_state(self.workspace)
        views = state.live_views()
        if version is not None and (not feature_views or len(feature_views) != 1):
            raise InvalidDefinitionError("version= needs exactly one feature view, e.g. "
                                         "feature_views=['driver_stats'].")
        names = list(feature_views) if feature_views is not None else sorted(views)
        targets = []
        for name in names:
            record = views.get(name)
            if record is None:
                from feature_rollout.core.errors import FeatureViewNotFound

                raise FeatureViewNotFound(name, self.workspace)
            if version is not None:
                number = version_number(version)
                target = record.version(number)
                if target is None:
                    raise FeatureViewVersionNotFound(name, number, [v.number for v in record.versions])
                targets.append((record, target))
                continue
            if feature_views is None and not record.metadata.get("online", True):
                continue
            for candidate in record.versions:
                if candidate.table_dropped:
                    continue
                staged = include_staged and candidate.state is VersionState.STAGED
                if candidate.state is VersionState.ACTIVE or staged:
                    targets.append((record, candidate))
        return targets

    def materialize(self, start_date: datetime, end_date: datetime, feature_views: Sequence[str] | None = None, *,
                    version: int | str | None = None, include_staged: bool = False, run_id: str | None = None,
                    progress: Callable[[Progress], None] | None = None,
                    batch_rows: int | None = None) -> list[MaterializationResult]:
        """Materialize ``[start_date, end_date)`` into the online store, per version (DESIGN §9).

        :param feature_views: view names; default every online view of the workspace.
        :param version: one version (``"v2"``) of the single view named in ``feature_views``.
        :param include_staged: also materialize staged versions (scheduled materialization of live versions).
        """
        window = interval(start_date, end_date)
        return [self._materialize_one(record, target, window, run_id=run_id, progress=progress,
                                      batch_rows=batch_rows)
                for record, target in self._targets(feature_views, version, include_staged)]

    def materialize_incremental(self, end_date: datetime, feature_views: Sequence[str] | None = None, *,
                                version: int | str | None = None, include_staged: bool = False,
                                run_id: str | None = None, progress: Callable[[Progress], None] | None = None,
                                batch_rows: int | None = None) -> list[MaterializationResult]:
        """Materialize each version from its own watermark (the end of its last covered interval) to
        ``end_date``; a version never materialized starts ``ttl`` before ``end_date``, or at its source's
        first event when the view has no ttl."""
        from feature_rollout.offline import min_event_time

        end = require_aware(end_date, "end_date")
        results = []
        ledger = self.ledger
        for record, target in self._targets(feature_views, version, include_staged):
            start = ledger.watermark(self.workspace, record.name, target.number)
            if start is None:
                ttl = record.metadata.get("ttl_seconds")
                start = end - timedelta(seconds=float(ttl)) if ttl else min_event_time(target.spec, self.repo_path)
            if start is None or start >= end:
                continue
            results.append(self._materialize_one(record, target, Interval(start, end), run_id=run_id,
                                                 progress=progress, batch_rows=batch_rows))
        return results

    def _materialize_one(self, record: ViewRecord, target: VersionRecord, window: Interval, *, run_id: str | None,
                         progress: Callable[[Progress], None] | None, batch_rows: int | None) -> MaterializationResult:
        from feature_rollout.materialize import DEFAULT_BATCH_ROWS, materialize_version
        from feature_rollout.reads import FeatureGroup, require_table

        require_table(FeatureGroup(record, target, (), True))
        return materialize_version(
            ledger=self.ledger, online=self.online_store, repo_path=self.repo_path, workspace=self.workspace,
            view=record.name, version=target.number, spec=dict(target.spec), table=self.online_table(target),
            window=window, run_id=run_id, batch_rows=batch_rows or DEFAULT_BATCH_ROWS, progress=progress,
        )

    def readiness(self, name: str, version: int | str, start: datetime, end: datetime) -> Readiness:
        """Whether ``version`` of ``name`` is populated for ``[start, end)``: ledger coverage, and one online
        row per entity with source rows within the view's ttl before ``end`` (expected vs found)."""
        from feature_rollout.gates import entity_window, readiness_result
        from feature_rollout.offline import entity_keys

        window = interval(start, end)
        number = version_number(version)
        record, target = self.registry.get_version(self.workspace, name, number)
        covered = self.ledger.coverage(self.workspace, name, number)
        counted_in = entity_window(window.start, window.end, record.metadata.get("ttl_seconds"))
        keys = entity_keys(target.spec, self.repo_path, counted_in.start, counted_in.end)
        found = self.online_store.count_present(self.online_table(target), keys) if keys.num_rows else 0
        return readiness_result(name, number, window, covered, keys.num_rows, found, counted_in)

    def parity(self, baseline: str, candidate: str, spine: Any = None, *,
               columns: Mapping[str, str] | Sequence[str] | None = None, abs_tol: float = 0.0, rel_tol: float = 0.0,
               max_mismatch_ratio: float = 0.0, sample_size: int = 1000, seed: int = 0,
               start: datetime | None = None, end: datetime | None = None, run_id: str | None = None) -> ParityReport:
        """Compare two versions on one spine and store the report (DESIGN §10).

        :param baseline: e.g. ``"driver_stats@v1"`` or ``"prod/driver_stats"`` (default version: the active one).
        :param candidate: the same forms, e.g. ``"driver_stats@v2"`` or ``"staging/driver_stats"``.
        :param spine: a Parquet path, a DataFrame or an Arrow table with the join keys and ``event_timestamp``,
            or ``"sha256:<digest>"`` for a spine an earlier check stored; by default a seeded sample of
            ``sample_size`` rows of the baseline's source (in ``[start, end)``). Every spine is stored.
        :param columns: which features to compare, or ``{baseline_feature: candidate_feature}``; default: the
            features both have.
        :param max_mismatch_ratio: the share of rows allowed to differ.
        """
        from feature_rollout.offline import (
            FeatureRead,
            historical_features,
            normalize_spine,
            sample_spine,
            spine_digest,
        )
        from feature_rollout.parity import ParityReport, column_pairs, compare

        if not 0 <= max_mismatch_ratio <= 1 or abs_tol < 0 or rel_tol < 0:
            raise InvalidDefinitionError("Tolerances must be >= 0 and max_mismatch_ratio between 0 and 1.")
        sides = [self._parity_side(ref) for ref in (baseline, candidate)]
        (base_ws, base_record, base_version), (cand_ws, cand_record, cand_version) = sides
        base_keys = [k["name"] for k in base_version.spec["join_keys"]]
        if base_keys != [k["name"] for k in cand_version.spec["join_keys"]]:
            raise InvalidDefinitionError(
                f"{baseline} and {candidate} have different join keys; parity compares versions of one entity.")
        pairs = column_pairs([f["name"] for f in base_version.spec["features"]],
                             [f["name"] for f in cand_version.spec["features"]], columns)
        if spine is None:
            if start is not None:
                require_aware(start, "start")
            if end is not None:
                require_aware(end, "end")
            rows = sample_spine(base_version.spec, self.repo_path, size=sample_size, seed=seed, start=start, end=end)
            spine_info: dict[str, Any] = {"kind": "sample", "size": sample_size, "seed": seed,
                                          "source": base_version.spec["source_spec"]["path"],
                                          "start": start.isoformat() if start else None,
                                          "end": end.isoformat() if end else None}
        elif isinstance(spine, str) and spine.startswith("sha256:"):
            rows, spine_info = self.parity_spine(spine.removeprefix("sha256:")), {"kind": "stored", "reused": spine}
        else:
            rows, spine_info = _load_spine(spine)
        rows = normalize_spine(rows)
        missing = [k for k in base_keys if k not in rows.column_names]
        if missing:
            raise EntityKeyError(f"The parity spine has no column(s) {', '.join(missing)} (join keys of {baseline}).")
        spine_table = rows.select([*base_keys, "event_timestamp"])
        digest = spine_digest(spine_table)
        spine_info["rows"] = spine_table.num_rows
        self.ledger.save_spine(digest, spine_table.num_rows, _parquet_bytes(spine_table))

        def read(record: ViewRecord, version: VersionRecord, names: Sequence[str]) -> pa.Table:
            ttl = record.metadata.get("ttl_seconds")
            feature_read = FeatureRead(dict(version.spec), tuple((n, n) for n in names), float(ttl) if ttl else None)
            return historical_features(spine_table, [feature_read], self.repo_path)

        base_rows = read(base_record, base_version, [b for b, _ in pairs])
        cand_rows = read(cand_record, cand_version, [c for _, c in pairs])
        counts, mismatched, examples = compare(base_rows, cand_rows, pairs=pairs, key_columns=base_keys,
                                               abs_tol=abs_tol, rel_tol=rel_tol)
        base_ref = f"{base_ws}/{base_record.name}@v{base_version.number}"
        cand_ref = f"{cand_ws}/{cand_record.name}@v{cand_version.number}"
        report = ParityReport(baseline=base_ref, candidate=cand_ref, rows_compared=spine_table.num_rows,
                              columns=pairs, mismatches=counts, mismatched_rows=mismatched, examples=tuple(examples),
                              abs_tol=abs_tol, rel_tol=rel_tol, max_mismatch_ratio=max_mismatch_ratio,
                              spine_digest=digest, spine=spine_info, run_id=run_id)
        report_id, created_at = self.ledger.save_parity_report(
            workspace=cand_ws, name=cand_record.name, baseline_ref=base_ref, candidate_ref=cand_ref,
            candidate_version=cand_version.number, spine_digest=digest, passed=report.passed,
            summary=report.summary(), run_id=run_id)
        return replace(report, id=report_id, created_at=created_at)

    def _parity_side(self, text: str) -> tuple[str, ViewRecord, VersionRecord]:
        ref: ViewRef = parse_view_ref(text)
        workspace = ref.workspace or self.workspace
        record, version = self.registry.get_version(workspace, ref.view, ref.version)
        return workspace, record, version

    def parity_spine(self, digest: str) -> pa.Table:
        """The spine an earlier parity check stored under ``digest`` (see ``ParityReport.spine_digest``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self.ledger.load_spine(digest)
        if data is None:
            raise ObjectNotFound(f"No stored parity spine with digest {digest}; run a parity check that draws one.")
        return pq.read_table(pa.BufferReader(data))

    def parity_reports(self, name: str, *, limit: int | None = 20) -> list[ParityReport]:
        """Stored parity reports whose candidate is ``name`` in this workspace, newest first."""
        from feature_rollout.parity import ParityReport

        return [ParityReport.from_row(r) for r in self.ledger.parity_reports(self.workspace, name, limit=limit)]

    def prune_versions(self, name: str, keep: int) -> list[int]:
        """Drop the online tables of retired versions of ``name`` beyond the ``keep`` newest retired ones.
        Never the active or a staged version; the versions' history stays. Returns the pruned versions."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise InvalidDefinitionError(f"keep must be a whole number >= 0, got {keep!r}.")
        record = self.registry.get_view(self.workspace, name)
        retired = sorted((v for v in record.versions if v.state is VersionState.RETIRED and not v.table_dropped),
                         key=lambda v: v.number, reverse=True)
        doomed = retired[keep:]
        for version in doomed:
            self.online_store.drop_table(version.online_table)
        self.registry.mark_tables_dropped(self.workspace, name, [v.number for v in doomed])
        return sorted(v.number for v in doomed)

    def status(self, name: str, version: int | str | None = None, *, runs: int = 5) -> dict[str, Any]:
        """Per version: state, ledger coverage, rows in the online table, the last runs and parity reports."""
        record = self.registry.get_view(self.workspace, name)
        numbers = [version_number(version)] if version is not None else [v.number for v in record.versions]
        ledger = self.ledger
        versions = []
        for number in numbers:
            target = record.version(number)
            if target is None:
                raise FeatureViewVersionNotFound(name, number, [v.number for v in record.versions])
            rows, missing = None, False
            if not target.table_dropped:
                try:
                    rows = self.online_store.count(self.online_table(target))
                except OnlineTableMissing:
                    missing = True  # a report, not an error: materializing the version brings it back
            versions.append({
                "version": f"v{number}", "state": target.state.value, "online_table": target.online_table,
                "table_dropped": target.table_dropped, "table_missing": missing, "online_rows": rows,
                "coverage": [i.to_dict() for i in ledger.coverage(self.workspace, name, number)],
                "runs": ledger.runs(self.workspace, name, number, limit=runs),
            })
        return {"workspace": self.workspace, "view": name, "active_version": record.active_version,
                "hold": record.hold.to_dict() if record.hold else None, "versions": versions,
                "parity_reports": [r.to_dict() for r in self.parity_reports(name, limit=runs)]}

    def check_skew(self, name: str, version: int | str | None = None, *, sample_size: int = 100,
                   seed: int = 0) -> dict[str, Any]:
        """Online/offline skew: for a sample of keys, the online values equal the point-in-time values at
        the version's watermark (the end of its materialized coverage)."""
        from feature_rollout.offline import FeatureRead, entity_keys, historical_features

        number = None if version is None else version_number(version)
        record, target = self.registry.get_version(self.workspace, name, number)
        watermark = self.ledger.watermark(self.workspace, name, target.number)
        if watermark is None:
            raise GateCheckFailed(f"{name} v{target.number} has never been materialized; nothing to compare.")
        ttl = record.metadata.get("ttl_seconds")
        window = Interval(watermark - timedelta(seconds=float(ttl)) if ttl else
                          self.ledger.coverage(self.workspace, name, target.number)[0].start, watermark)
        keys = entity_keys(target.spec, self.repo_path, window.start, window.end)
        if keys.num_rows > sample_size:
            import pyarrow.compute as pc

            keys = keys.take(pc.array_sort_indices(pc.random(keys.num_rows, initializer=seed))[:sample_size])
        import pyarrow as pa

        at = watermark - timedelta(microseconds=1)
        spine = keys.append_column("event_timestamp", pa.array([at] * keys.num_rows, pa.timestamp("us", tz="UTC")))
        features = [f["name"] for f in target.spec["features"]]
        offline = historical_features(spine, [FeatureRead(dict(target.spec), tuple((f, f) for f in features),
                                                          float(ttl) if ttl else None)], self.repo_path)
        online = self.online_store.read(self.online_table(target), keys, features)
        mismatches = {f: sum(1 for a, b in zip(offline.column(f).to_pylist(), online.column(f).to_pylist(),
                                               strict=True) if a != b) for f in features}
        return {"view": name, "version": target.number, "at": watermark.isoformat(), "keys": keys.num_rows,
                "mismatches": mismatches, "passed": not any(mismatches.values())}

    # --- workspaces (§8) --------------------------------------------------------------------------

    def create_workspace(self, name: str, *, live: bool = False) -> dict[str, Any]:
        """Create a workspace: ``live=True`` for production (``prevent_destroy`` applies), else development."""
        return self.registry.create_workspace(name, live=live)

    def list_workspaces(self) -> list[dict[str, Any]]:
        return self.registry.list_workspaces()


def _view_object(record: ViewRecord, snapshot: VersionRecord, *, explicit: bool) -> FeatureView:
    """Rebuild a FeatureView from a version snapshot plus the view's in-place metadata."""
    spec: dict[str, Any] = dict(snapshot.spec)
    metadata = record.metadata
    spec.update({k: metadata[k] for k in VIEW_METADATA_KEYS if k in metadata})
    docs = metadata.get("fields", {})
    spec["features"] = [{**f, **docs.get(f["name"], {})} for f in spec["features"]]
    spec["version"] = f"v{snapshot.number}" if explicit else "latest"
    view = FeatureView.from_spec(spec, FileSource.from_spec(spec["source_spec"]), _entities(spec))
    view.current_version_number = snapshot.number
    return view


def _entities(spec: Mapping[str, Any]) -> Sequence[Entity]:
    keys: dict[str, list[str]] = {name: [] for name in spec["entities"]}
    for key in spec["join_keys"]:
        keys.setdefault(key.get("entity") or spec["entities"][0], []).append(key["name"])
    return [Entity(name=name, join_keys=join_keys or None) for name, join_keys in keys.items()]


def _entity_rows(entity_rows: Any) -> dict[str, list[Any]]:
    """Entity rows as columns: from a list of dicts, a dict of lists, or a DataFrame."""
    if hasattr(entity_rows, "to_dict") and hasattr(entity_rows, "columns"):
        return {str(c): list(entity_rows[c]) for c in entity_rows.columns}
    if isinstance(entity_rows, Mapping):
        return {k: list(v) for k, v in entity_rows.items()}
    rows = list(entity_rows)
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _key_table(rows: Mapping[str, list[Any]], table: OnlineTable, group: Any) -> pa.Table:
    import pyarrow as pa

    from feature_rollout.arrow_types import arrow_type

    missing = [k for k in table.key_names if k not in rows]
    if missing:
        raise EntityKeyError(
            f"The entity rows have no {', '.join(missing)}, the join key(s) of {group.view.name} "
            f"v{group.version.number}; add them to every row."
        )
    columns = {}
    for column in table.join_keys:
        try:
            columns[column.name] = pa.array(rows[column.name], type=arrow_type(column.dtype))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
            raise EntityKeyError(
                f"The values of join key '{column.name}' are not {column.dtype}: {err}."
            ) from None
    return pa.table(columns)


def _load_spine(spine: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(spine, str | os.PathLike):
        import pyarrow.parquet as pq

        path = Path(spine)
        if not path.is_file():
            raise SourceNotFoundError(f"The parity spine file {path} does not exist.")
        return pq.read_table(path), {"kind": "file", "path": str(path)}
    return spine, {"kind": "given"}


def _parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())
