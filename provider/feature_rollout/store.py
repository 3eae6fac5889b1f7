"""``FeatureStore``: the public Python API (DESIGN §4). It composes the pure core, the registry and
(with the data plane) the offline and online stores; it holds no rules of its own."""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from feature_rollout.config import RepoConfig, load_config
from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, FileSource
from feature_rollout.core.errors import (
    GatesNotAvailableError,
    InvalidDefinitionError,
    InvalidVersionError,
    ObjectNotFound,
    WorkspaceNotFound,
)
from feature_rollout.core.fingerprint import VIEW_METADATA_KEYS
from feature_rollout.core.plan import DesiredState, Plan, PlanOptions, collect
from feature_rollout.core.plan import plan as compute_plan
from feature_rollout.core.promotion import PointerMove
from feature_rollout.core.refs import parse_version, validate_name
from feature_rollout.core.state import Hold, ObjectRecord, VersionRecord, ViewRecord
from feature_rollout.registry import ApplyResult, Registry
from feature_rollout.repo import load_definitions


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

    def __repr__(self) -> str:
        return f"FeatureStore(repo_path={str(self.repo_path)!r}, workspace={self.workspace!r})"

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.config.registry_url)
        return self._registry

    @property
    def project(self) -> str:
        return self.config.project

    # --- plan and apply (§7) ----------------------------------------------------------------------

    def _desired(self, objects: Iterable[object] | None, objects_to_delete: Iterable[object] | None,
                 partial: bool | None) -> tuple[DesiredState, bool]:
        if objects is None:
            if objects_to_delete:
                raise InvalidDefinitionError("objects_to_delete needs objects=...; without objects the repo is "
                                             "the whole desired state, so remove the definitions from it instead.")
            return collect(load_definitions(self.repo_path)), bool(partial)
        # As in Feast, objects passed explicitly are added or updated; nothing else is deleted unless
        # listed in objects_to_delete, or partial=False makes them the whole desired state.
        return collect(objects, objects_to_delete or ()), True if partial is None else partial

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
        self.registry.save_plan(result, actor=default_actor())
        return result

    def apply(self, objects: Iterable[object] | None = None, *, plan_id: str | None = None,
              no_promote: bool = False, suppress_recreates: bool = False, partial: bool | None = None,
              objects_to_delete: Iterable[object] | None = None, run_id: str | None = None) -> ApplyResult:
        """Apply the stored plan ``plan_id`` exactly, or plan and apply in one transaction.

        :raises StalePlanError: the workspace changed since ``plan_id`` was made; nothing was applied.
        """
        actor = default_actor()
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
        """Hook run inside the apply transaction; the data plane creates online tables here."""

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
        if require_gates:
            raise GatesNotAvailableError(
                "Promotion gates (readiness and parity, DESIGN §10) need the data plane, which this version does not "
                "have yet; nothing was promoted. Promote without gates with require_gates=False "
                "(`feature-rollout promote --skip-gates`)."
            )
        return self.registry.promote(self.workspace, name, number, actor=default_actor(), run_id=run_id,
                                     reason=reason)

    def rollback(self, name: str, *, to: int | str | None = None, reason: str | None = None,
                 run_id: str | None = None) -> PointerMove:
        """Promote the previous version of ``name`` (or ``to``) and hold the current one back from applies."""
        number = None if to is None else version_number(to, "rollback target")
        return self.registry.rollback(self.workspace, name, to=number, actor=default_actor(), run_id=run_id,
                                      reason=reason)

    def release_hold(self, name: str, *, reason: str | None = None, run_id: str | None = None) -> Hold | None:
        """Lift the rollback hold on ``name``; returns the lifted hold, or ``None`` if there was none."""
        return self.registry.release_hold(self.workspace, name, actor=default_actor(), run_id=run_id, reason=reason)

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
