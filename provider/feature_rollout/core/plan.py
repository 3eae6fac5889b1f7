"""``plan(current, desired, options) -> Plan``: one pure function that decides every change.

Apply executes the changes a plan lists and decides nothing itself, so what a plan shows is what an
apply does. The rules are DESIGN §6 (versioning), §7 (plan and apply), §8 (prevent_destroy) and
§11 (holds); each rule is marked where it is decided.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, FileSource
from feature_rollout.core.errors import (
    DependencyConflictError,
    DuplicateObjectError,
    EmptySchemaError,
    FeatureViewPinConflict,
    FeatureViewVersionNotFound,
    InvalidDefinitionError,
    OnlineTableConflict,
    PreventDestroyError,
    RecreateNotSuppressible,
    UnknownReferenceError,
)
from feature_rollout.core.fingerprint import (
    Fingerprint,
    digest,
    entity_fingerprint,
    service_fingerprint,
    source_fingerprint,
    view_fingerprint,
    view_metadata,
)
from feature_rollout.core.refs import online_table_name, parse_version
from feature_rollout.core.state import ObjectRecord, VersionRecord, VersionState, ViewRecord, WorkspaceState

Spec = Mapping[str, Any]
PLAN_FORMAT_VERSION = 1


class ChangeKind(StrEnum):
    """What a change does, from least to most disruptive."""

    UNCHANGED = "unchanged"
    UPDATE_IN_PLACE = "update_in_place"
    PROMOTE_STAGED = "promote_staged"
    REUSE_VERSION = "reuse_version"
    PIN = "pin"
    CREATE = "create"
    NEW_VERSION = "new_version"
    RECREATE = "recreate"
    DELETE = "delete"


class ObjectType(StrEnum):
    ENTITY = "entity"
    DATA_SOURCE = "data_source"
    FEATURE_VIEW = "feature_view"
    FEATURE_SERVICE = "feature_service"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def plural(self) -> str:
        return "entities" if self is ObjectType.ENTITY else f"{self.label}s"


class Serving(StrEnum):
    """What a change does to the online store: ``none``; ``new_table`` (a version's table is created);
    ``schema_change`` (readers of the active version see different columns, or none at all)."""

    NONE = "none"
    NEW_TABLE = "new_table"
    SCHEMA_CHANGE = "schema_change"


@dataclass(frozen=True)
class Materialization:
    """The materialization a change implies: ``backfill`` a new version's table, or ``catch_up`` an
    existing version from its own watermark before it serves."""

    view: str
    version: int
    range: str

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "version": self.version, "range": self.range}


@dataclass(frozen=True)
class PlanOptions:
    no_promote: bool = False
    suppress_recreates: bool = False
    partial: bool = False

    def to_dict(self) -> dict[str, bool]:
        return {"no_promote": self.no_promote, "suppress_recreates": self.suppress_recreates, "partial": self.partial}


@dataclass(frozen=True)
class Change:
    """One change of one object.

    For feature views: ``from_version`` is the active version before the apply, ``to_version`` the
    version the change is about, ``promote`` whether the active pointer moves to it, and ``state``
    that version's state afterwards. ``amend`` marks a suppressed recreate: the active version's
    snapshot is rewritten in place (``suppress_recreates``).
    """

    kind: ChangeKind
    object_type: ObjectType
    name: str
    from_version: int | None = None
    to_version: int | None = None
    promote: bool = False
    state: VersionState | None = None
    serving: Serving = Serving.NONE
    materialization: Materialization | None = None
    held: bool = False
    amend: bool = False
    updates_metadata: bool = False
    online_table: str | None = None
    details: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    spec: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    #: For feature views: the in-place metadata the view row holds after the apply.
    metadata: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    fingerprint: Fingerprint | None = field(default=None, compare=False, repr=False)

    def to_dict(self, *, internal: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "object_type": self.object_type.value,
            "name": self.name,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "promote": self.promote,
            "state": self.state.value if self.state else None,
            "serving": self.serving.value,
            "materialization": self.materialization.to_dict() if self.materialization else None,
            "held": self.held,
            "amend": self.amend,
            "updates_metadata": self.updates_metadata,
            "online_table": self.online_table,
            "details": list(self.details),
            "warnings": list(self.warnings),
            "schema_hash": self.fingerprint.schema_hash if self.fingerprint else None,
        }
        if internal:
            data["spec"] = dict(self.spec) if self.spec is not None else None
            data["metadata"] = dict(self.metadata) if self.metadata is not None else None
            data["fingerprint"] = (
                {"schema_hash": self.fingerprint.schema_hash, "metadata_hash": self.fingerprint.metadata_hash,
                 "served_hash": self.fingerprint.served_hash} if self.fingerprint else None
            )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        mat = data.get("materialization")
        fp = data.get("fingerprint")
        return cls(
            kind=ChangeKind(data["kind"]),
            object_type=ObjectType(data["object_type"]),
            name=data["name"],
            from_version=data.get("from_version"),
            to_version=data.get("to_version"),
            promote=bool(data.get("promote")),
            state=VersionState(data["state"]) if data.get("state") else None,
            serving=Serving(data.get("serving", "none")),
            materialization=Materialization(**mat) if mat else None,
            held=bool(data.get("held")),
            amend=bool(data.get("amend")),
            updates_metadata=bool(data.get("updates_metadata")),
            online_table=data.get("online_table"),
            details=tuple(data.get("details", ())),
            warnings=tuple(data.get("warnings", ())),
            spec=data.get("spec"),
            metadata=data.get("metadata"),
            fingerprint=Fingerprint(**fp) if fp else None,
        )


_SYMBOLS = {
    ChangeKind.CREATE: "+",
    ChangeKind.UPDATE_IN_PLACE: "~",
    ChangeKind.RECREATE: "!",
    ChangeKind.DELETE: "-",
    ChangeKind.NEW_VERSION: "^",
    ChangeKind.REUSE_VERSION: ">",
    ChangeKind.PROMOTE_STAGED: ">",
    ChangeKind.PIN: "@",
    ChangeKind.UNCHANGED: "=",
}


@dataclass(frozen=True)
class Plan:
    """The result of :func:`plan`: changes in apply order, and a content-hash ``id``."""

    workspace: str
    base_revision: int
    options: PlanOptions
    changes: tuple[Change, ...]
    live: bool = True
    workspace_exists: bool = True
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", digest(self._content)[:16])

    @cached_property
    def _content(self) -> dict[str, Any]:
        # Built once: it is hashed for the id and stored by the registry (frozen, so it cannot go stale).
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "workspace": self.workspace,
            "base_revision": self.base_revision,
            "live": self.live,
            "workspace_exists": self.workspace_exists,
            "options": self.options.to_dict(),
            "changes": [c.to_dict(internal=True) for c in self.changes],
        }

    @property
    def has_changes(self) -> bool:
        """True when applying the plan writes anything (a held or not-promoted change writes nothing)."""
        return any(_writes(c) for c in self.changes)

    @property
    def summary(self) -> dict[str, int]:
        counts = Counter(c.kind.value for c in self.changes)
        return {kind.value: counts[kind.value] for kind in ChangeKind if counts[kind.value]}

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for c in self.changes for w in c.warnings)

    def to_json(self) -> dict[str, Any]:
        """The stable, documented JSON form (docs/plan-json.md); safe for XCom and CI."""
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "id": self.id,
            "workspace": self.workspace,
            "base_revision": self.base_revision,
            "options": self.options.to_dict(),
            "has_changes": self.has_changes,
            "summary": self.summary,
            "warnings": list(self.warnings),
            "changes": [c.to_dict() for c in self.changes],
        }

    def to_record(self) -> dict[str, Any]:
        """Everything apply needs, for storage in the registry."""
        return {**self._content, "id": self.id}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Plan:
        options = PlanOptions(**record["options"])
        changes = tuple(Change.from_dict(c) for c in record["changes"])
        plan = cls(workspace=record["workspace"], base_revision=record["base_revision"], options=options,
                   changes=changes, live=record.get("live", True),
                   workspace_exists=record.get("workspace_exists", True))
        if record.get("id") and plan.id != record["id"]:
            raise ValueError(f"Stored plan {record['id']} does not match its content (hash {plan.id}).")
        return plan

    def render(self, *, show_unchanged: bool = False) -> str:
        """A human diff: ``+ create``, ``~ update``, ``! recreate``, ``- delete``, ``^ new version v3 (staged)``."""
        flags = [name for name, on in self.options.to_dict().items() if on]
        head = f"Plan {self.id} for workspace '{self.workspace}' at revision {self.base_revision}"
        lines = [head + (f" ({', '.join(f.replace('_', '-') for f in flags)})" if flags else "")]
        unchanged = 0
        for change in self.changes:
            if change.kind is ChangeKind.UNCHANGED and not show_unchanged and not change.details:
                unchanged += 1
                continue
            lines.append(f"  {_SYMBOLS[change.kind]} {_describe(change)}")
            lines.extend(f"      {d}" for d in change.details)
        if unchanged:
            lines.append(f"  = {unchanged} object(s) unchanged")
        if not self.has_changes:
            lines.append("  No changes to apply.")
        for warning in self.warnings:
            lines.append(f"  WARNING: {warning}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _writes(change: Change) -> bool:
    if change.updates_metadata:
        return True
    if change.kind is ChangeKind.UNCHANGED:
        return False
    if change.kind in (ChangeKind.PIN, ChangeKind.PROMOTE_STAGED) and not change.promote:
        return False
    # A reuse under --no-promote writes only when it re-stages a retired snapshot.
    return not (change.kind is ChangeKind.REUSE_VERSION and not change.promote
                and change.state is not VersionState.STAGED)


def _describe(change: Change) -> str:
    what = f"{change.object_type.label} {change.name}"
    k = change.kind
    if k is ChangeKind.CREATE:
        if change.object_type is ObjectType.FEATURE_VIEW:
            return f"create {what} v{change.to_version} ({_state(change)}) [table {change.online_table}]"
        return f"create {what}"
    if k is ChangeKind.UPDATE_IN_PLACE:
        return f"update {what} in place" + (f" (amends v{change.to_version} without a new version)"
                                            if change.amend else "")
    if k is ChangeKind.RECREATE:
        return f"recreate {what}"
    if k is ChangeKind.DELETE:
        return f"delete {what}" + (" (its version history is kept)" if change.object_type is ObjectType.FEATURE_VIEW
                                   else "")
    if k is ChangeKind.NEW_VERSION:
        return f"new version v{change.to_version} ({_state(change)}) of {what} [table {change.online_table}]"
    if k is ChangeKind.PROMOTE_STAGED:
        return f"promote staged v{change.to_version} of {what}" + _not_promoted(change)
    if k is ChangeKind.REUSE_VERSION:
        state = "" if change.held else f" ({_state(change)})"
        return f"reuse v{change.to_version} of {what}{state}" + _not_promoted(change)
    if k is ChangeKind.PIN:
        return f"pin {what} to v{change.to_version}" + _not_promoted(change)
    version = f" v{change.to_version}" if change.to_version is not None else ""
    return f"unchanged {what}{version}"


def _state(change: Change) -> str:
    return change.state.value if change.state else "?"


def _not_promoted(change: Change) -> str:
    if change.held:
        return f" - held by rollback: stays at v{change.from_version}; run release-hold to allow it"
    if not change.promote and change.kind is not ChangeKind.REUSE_VERSION:
        return " - not promoted (--no-promote)"
    return ""


# --- desired state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredState:
    """Specs of the objects a user wants, by kind and name, plus explicit deletions (partial applies)."""

    entities: Mapping[str, Spec] = field(default_factory=dict)
    data_sources: Mapping[str, Spec] = field(default_factory=dict)
    feature_views: Mapping[str, Spec] = field(default_factory=dict)
    feature_services: Mapping[str, Spec] = field(default_factory=dict)
    deletions: frozenset[tuple[ObjectType, str]] = frozenset()


def collect(objects: Iterable[object], objects_to_delete: Iterable[object] = ()) -> DesiredState:
    """Turn definition objects into a :class:`DesiredState`.

    A view brings its source and its :class:`Entity` objects along, and a service its view objects,
    as in Feast. Two *different* objects of one kind with one name are an error.
    """
    buckets: dict[ObjectType, dict[str, Spec]] = {t: {} for t in ObjectType}
    origin: dict[tuple[ObjectType, str], str] = {}

    def add(kind: ObjectType, spec: Spec, how: str) -> None:
        name = spec["name"]
        existing = buckets[kind].get(name)
        if existing is not None and existing != spec:
            first = origin[(kind, name)]
            where = f" ({first}, and {how})" if first != how else ""
            raise DuplicateObjectError(
                f"Two different {kind.plural} are named '{name}'{where}; rename one, or define it once and pass "
                "or import that one object."
            )
        buckets[kind][name] = spec
        origin.setdefault((kind, name), how)

    for obj in objects:
        if isinstance(obj, Entity):
            add(ObjectType.ENTITY, obj.to_spec(), f"entity '{obj.name}'")
        elif isinstance(obj, FileSource):
            add(ObjectType.DATA_SOURCE, obj.to_spec(), f"data source '{obj.name}'")
        elif isinstance(obj, FeatureView):
            _add_view(obj, add, "")
        elif isinstance(obj, FeatureService):
            add(ObjectType.FEATURE_SERVICE, obj.to_spec(), f"feature service '{obj.name}'")
            for view in obj.feature_views:
                _add_view(view, add, f" (in feature service '{obj.name}')")
        else:
            raise InvalidDefinitionError(
                f"{obj!r} is not a definition; pass Entity, FileSource, FeatureView or FeatureService objects."
            )
    deletions = set()
    for obj in objects_to_delete:
        kind = _object_type(obj)
        deletions.add((kind, obj.name))  # type: ignore[attr-defined]
    return DesiredState(
        entities=buckets[ObjectType.ENTITY],
        data_sources=buckets[ObjectType.DATA_SOURCE],
        feature_views=buckets[ObjectType.FEATURE_VIEW],
        feature_services=buckets[ObjectType.FEATURE_SERVICE],
        deletions=frozenset(deletions),
    )


def _add_view(view: FeatureView, add: Any, where: str) -> None:
    add(ObjectType.FEATURE_VIEW, view.to_spec(), f"feature view '{view.name}'{where}")
    add(ObjectType.DATA_SOURCE, view.source.to_spec(), f"the source of feature view '{view.name}'{where}")
    for entity in view.entities:
        if isinstance(entity, Entity):
            add(ObjectType.ENTITY, entity.to_spec(), f"an entity of feature view '{view.name}'{where}")


def _object_type(obj: object) -> ObjectType:
    for cls, kind in ((Entity, ObjectType.ENTITY), (FileSource, ObjectType.DATA_SOURCE),
                      (FeatureView, ObjectType.FEATURE_VIEW), (FeatureService, ObjectType.FEATURE_SERVICE)):
        if isinstance(obj, cls):
            return kind
    raise InvalidDefinitionError(f"{obj!r} is not a definition that can be deleted.")


def untyped_join_keys(current: WorkspaceState, desired: DesiredState) -> dict[str, tuple[str, ...]]:
    """Per desired view, the join keys whose type is declared nowhere (not in its schema, not as the
    entity's ``value_type``): the store infers those from the source before planning."""
    untyped: dict[str, tuple[str, ...]] = {}
    for name, spec in desired.feature_views.items():
        declared = {f["name"] for f in [*spec.get("entity_columns", []), *spec["features"]]}
        missing = []
        for entity_name in spec["entities"]:
            entity = desired.entities.get(entity_name) or _spec(current.entities.get(entity_name))
            if entity is None or entity.get("value_type"):
                continue
            missing += [k for k in entity["join_keys"] if k not in declared]
        if missing:
            untyped[name] = tuple(missing)
    return untyped


def with_key_types(desired: DesiredState, key_types: Mapping[str, Mapping[str, str]]) -> DesiredState:
    """``desired`` with inferred join-key types added to the views' schemas, exactly as if declared."""
    views = dict(desired.feature_views)
    for name, types in key_types.items():
        spec = dict(views[name])
        spec["entity_columns"] = [*spec.get("entity_columns", []),
                                  *({"name": k, "dtype": t, "description": "", "tags": {}} for k, t in types.items())]
        views[name] = spec
    return replace(desired, feature_views=views)


def resolve_view(spec: Spec, source: Spec, entities: Mapping[str, Spec]) -> dict[str, Any]:
    """Complete a view spec with what versioning needs: the source's spec and typed join keys.

    Schema fields named like a join key are the key's declared type, not features (as in Feast).
    """
    name = spec["name"]
    key_types = {f["name"]: f["dtype"] for f in spec.get("entity_columns", [])}
    join_keys: list[dict[str, Any]] = []
    for entity_name in spec["entities"]:
        entity = entities.get(entity_name)
        if entity is None:
            raise UnknownReferenceError(
                f"Feature view '{name}' uses entity '{entity_name}', which is not defined. Define "
                f"Entity(name='{entity_name}', ...) in the repo, or fix the name."
            )
        for key in entity["join_keys"]:
            if any(k["name"] == key for k in join_keys):
                raise InvalidDefinitionError(f"Feature view '{name}' gets join key '{key}' from two entities.")
            declared = next((f["dtype"] for f in spec["features"] if f["name"] == key), None)
            join_keys.append({"name": key, "dtype": key_types.get(key) or declared or entity.get("value_type"),
                              "entity": entity_name})
    key_names = {k["name"] for k in join_keys}
    features = [f for f in spec["features"] if f["name"] not in key_names]
    entity_columns = [*spec.get("entity_columns", []), *(f for f in spec["features"] if f["name"] in key_names)]
    if not features:
        raise EmptySchemaError(f"Feature view '{name}' has no features besides its join keys; add a Field.")
    resolved = {k: v for k, v in spec.items() if k != "version"}
    resolved.update(features=features, entity_columns=entity_columns, join_keys=join_keys, source_spec=dict(source))
    return resolved


# --- the plan ---------------------------------------------------------------------------------


def plan(current: WorkspaceState, desired: DesiredState, options: PlanOptions = PlanOptions()) -> Plan:
    """Diff ``desired`` against ``current`` and return the changes, in the order apply runs them.

    Raises the definition, version and protection errors of :mod:`feature_rollout.core.errors`
    before anything is stored or applied.
    """
    planner = _Planner(current, desired, options)
    return planner.run()


class _Planner:
    def __init__(self, current: WorkspaceState, desired: DesiredState, options: PlanOptions) -> None:
        self.current = current
        self.desired = desired
        self.options = options
        self.live_views = current.live_views()

    def run(self) -> Plan:
        entities_after = self._after(ObjectType.ENTITY, self.desired.entities, self.current.entities)
        sources_after = self._after(ObjectType.DATA_SOURCE, self.desired.data_sources, self.current.data_sources)
        views_after = self._after(ObjectType.FEATURE_VIEW, self.desired.feature_views,
                                  {n: v for n, v in self.live_views.items()})
        services_after = self._after(ObjectType.FEATURE_SERVICE, self.desired.feature_services,
                                     self.current.feature_services)

        changes: list[Change] = []
        changes += self._plan_objects(ObjectType.ENTITY, self.desired.entities, self.current.entities,
                                      entity_fingerprint)
        changes += self._plan_objects(ObjectType.DATA_SOURCE, self.desired.data_sources, self.current.data_sources,
                                      source_fingerprint)
        view_changes = [self._plan_view(name, spec, entities_after, sources_after)
                        for name, spec in sorted(self.desired.feature_views.items())]
        changes += view_changes
        changes += self._plan_objects(ObjectType.FEATURE_SERVICE, self.desired.feature_services,
                                      self.current.feature_services, service_fingerprint)
        deletions = self._deletions(entities_after, sources_after, views_after, services_after)
        changes += deletions

        self._check_dependencies(views_after, entities_after, sources_after, services_after, view_changes)
        self._check_online_tables(view_changes)
        if self.current.live:
            self._check_protection(changes)
        # An unchanged object needs no spec to apply; dropping it keeps stored plans small.
        changes = [replace(c, spec=None, metadata=None) if not _writes(c) and c.kind is ChangeKind.UNCHANGED else c
                   for c in changes]
        return Plan(workspace=self.current.name, base_revision=self.current.revision, options=self.options,
                    changes=tuple(changes), live=self.current.live, workspace_exists=self.current.exists)

    # What exists after the apply: desired objects, plus (for partial applies) current ones kept.
    def _after(self, kind: ObjectType, desired: Mapping[str, Any], current: Mapping[str, Any]) -> set[str]:
        kept = set(current) if self.options.partial else set()
        return {n for n in set(desired) | kept if (kind, n) not in self.desired.deletions}

    def _require(self, kind: ObjectType, name: str, after: set[str], view: str) -> None:
        """``view`` uses ``name``: it must exist after the apply."""
        if name in after:
            return
        current = self.current.entities if kind is ObjectType.ENTITY else self.current.data_sources
        if name in current or (kind, name) in self.desired.deletions:
            raise DependencyConflictError(
                f"Cannot delete {kind.label} '{name}': feature view '{view}' still uses it. Delete or change the "
                "view first (or in the same apply)."
            )
        raise UnknownReferenceError(
            f"Feature view '{view}' uses {kind.label} '{name}', which is not defined. Define it in the repo, or fix "
            "the name."
        )

    def _plan_objects(self, kind: ObjectType, desired: Mapping[str, Spec], current: Mapping[str, ObjectRecord],
                      fingerprint: Any) -> list[Change]:
        changes = []
        for name, spec in sorted(desired.items()):
            fp: Fingerprint = fingerprint(spec)
            record = current.get(name)
            if record is None:
                changes.append(Change(ChangeKind.CREATE, kind, name, spec=spec, fingerprint=fp))
            elif fp.schema_hash != record.fingerprint.schema_hash:
                details = _object_details(kind, record.spec, spec)
                if not self.options.suppress_recreates:
                    changes.append(Change(ChangeKind.RECREATE, kind, name, details=details, spec=spec, fingerprint=fp))
                elif fp.served_hash == record.fingerprint.served_hash:
                    changes.append(Change(
                        ChangeKind.UPDATE_IN_PLACE, kind, name, amend=True, details=details, spec=spec, fingerprint=fp,
                        warnings=(f"suppress_recreates: {kind.label} '{name}' is changed in place instead of "
                                  "recreated; nothing is re-materialized, so data already served was read from the "
                                  "old definition.",),
                    ))
                else:
                    raise RecreateNotSuppressible(kind.label, name, "; ".join(details) or "its schema changes")
            elif fp.metadata_hash != record.fingerprint.metadata_hash:
                changes.append(Change(ChangeKind.UPDATE_IN_PLACE, kind, name,
                                      details=_object_details(kind, record.spec, spec), spec=spec, fingerprint=fp))
            else:
                changes.append(Change(ChangeKind.UNCHANGED, kind, name, spec=spec, fingerprint=fp))
        return changes

    # -- feature views: DESIGN §6, row by row ------------------------------------------------------

    def _plan_view(self, name: str, raw: Spec, entities_after: set[str], sources_after: set[str]) -> Change:
        source_name = raw["source"]
        self._require(ObjectType.DATA_SOURCE, source_name, sources_after, name)
        for entity in raw["entities"]:
            self._require(ObjectType.ENTITY, entity, entities_after, name)
        source = self.desired.data_sources.get(source_name) or _spec(self.current.data_sources.get(source_name))
        entity_specs = {n: self.desired.entities.get(n) or _spec(self.current.entities.get(n)) for n in raw["entities"]}
        assert source is not None
        spec = resolve_view(raw, source, {n: s for n, s in entity_specs.items() if s is not None})
        fp = view_fingerprint(spec)
        pin = parse_version(raw.get("version", "latest"), what=f"version of feature view '{name}'")
        record = self.current.feature_views.get(name)
        if record is None or not record.versions:
            # Row 1: first apply of a view -> v0 (active unless no_promote). A pin can only declare v0.
            if pin not in (None, 0):
                raise FeatureViewVersionNotFound(name, pin, [], hint="A new view starts at v0: use version='latest'.")
            change = self._new_version(name, spec, fp, None, 0, ChangeKind.CREATE,
                                       online_table_name(self.current.name, name, 0))
            return replace(change, metadata=view_metadata(spec))
        metadata = view_metadata(spec, record.metadata)
        metadata_changed = record.deleted or metadata != record.metadata
        change = self._plan_existing_view(record, spec, fp, pin, metadata_changed)
        # Metadata is unversioned: it is written in place even when the version part is held or staged.
        return replace(change, updates_metadata=metadata_changed, metadata=metadata)

    def _plan_existing_view(self, record: ViewRecord, spec: Spec, fp: Fingerprint, pin: int | None,
                            metadata_changed: bool) -> Change:
        name = record.name
        active = None if record.deleted else record.active
        from_version = active.number if active else None
        details = _view_details(active.spec if active else None, spec, metadata_changed, record.metadata)

        def same_as_active(kind: ChangeKind = ChangeKind.UNCHANGED) -> Change:
            # Rows 2 and 3: nothing changed, or only metadata (in place, no new version).
            kind = ChangeKind.UPDATE_IN_PLACE if metadata_changed else kind
            return Change(kind, ObjectType.FEATURE_VIEW, name, from_version, from_version, state=VersionState.ACTIVE,
                          online_table=active.online_table if active else None, details=details, spec=spec,
                          fingerprint=fp)

        if pin is None:
            if active is not None and fp.schema_hash == active.schema_hash:
                return same_as_active()
            match = _latest_matching(record, fp.schema_hash)
            if match is not None:
                # Row 5 (reuse an equal snapshot) and row 7 (a plain apply promotes the staged vK).
                kind = ChangeKind.PROMOTE_STAGED if match.state is VersionState.STAGED else ChangeKind.REUSE_VERSION
                return self._move_to(record, match, kind, spec, fp, details)
            if self.options.suppress_recreates and active is not None and not self.options.no_promote:
                # Under --no-promote nothing served may change, so the new schema is staged instead.
                return self._amend(name, active, spec, fp, details)
            # Rows 4 and 6: a new schema is a new version, staged under no_promote.
            number = record.highest_version + 1
            return self._new_version(name, spec, fp, from_version, number, ChangeKind.NEW_VERSION,
                                     online_table_name(self.current.name, name, number), details)

        target = record.version(pin)
        if target is None:
            existing = [v.number for v in record.versions]
            if pin != record.highest_version + 1:
                # Row 10: pinning a version that does not exist and is not the next one.
                raise FeatureViewVersionNotFound(
                    name, pin, existing,
                    hint=f"Pin an existing version, or declare the next one (v{record.highest_version + 1}).",
                )
            duplicate = _latest_matching(record, fp.schema_hash)
            if duplicate is not None:
                raise FeatureViewPinConflict(
                    name, pin,
                    message=(f"Feature view '{name}' declares version='v{pin}', but its definition equals the "
                             f"existing v{duplicate.number}; pin version='v{duplicate.number}' instead."),
                )
            # Row 9: forward declaration of the next version.
            return self._new_version(name, spec, fp, from_version, pin, ChangeKind.NEW_VERSION,
                                     online_table_name(self.current.name, name, pin),
                                     (*details, f"forward declaration of v{pin}"))
        if active is not None and active.number == pin and fp.schema_hash in (active.schema_hash,
                                                                              record.pinned_schema_hash):
            # Re-applying the definition that made the pin is a no-op.
            return same_as_active()
        # Row 8: a pin is valid when only the version changed, or the definition is vK's own snapshot.
        if fp.schema_hash != target.schema_hash and (active is None or fp.schema_hash != active.schema_hash):
            raise FeatureViewPinConflict(name, pin)
        return self._move_to(record, target, ChangeKind.PIN, spec, fp, details)

    def _new_version(self, name: str, spec: Spec, fp: Fingerprint, from_version: int | None, number: int,
                     kind: ChangeKind, table: str, details: Sequence[str] = ()) -> Change:
        promote = not self.options.no_promote
        if not promote or from_version is None:
            serving = Serving.NEW_TABLE
        else:
            active = self.current.feature_views[name].version(from_version)
            serving = (Serving.SCHEMA_CHANGE if active is None or active.served_hash != fp.served_hash
                       else Serving.NEW_TABLE)
        return Change(
            kind, ObjectType.FEATURE_VIEW, name, from_version, number, promote=promote,
            state=VersionState.ACTIVE if promote else VersionState.STAGED, serving=serving,
            materialization=Materialization(name, number, "backfill"), online_table=table, details=tuple(details),
            spec=spec, fingerprint=fp,
        )

    def _move_to(self, record: ViewRecord, target: VersionRecord, kind: ChangeKind, spec: Spec, fp: Fingerprint,
                 details: tuple[str, ...]) -> Change:
        active = None if record.deleted else record.active
        from_version = active.number if active else None
        name = record.name
        common: dict[str, Any] = dict(online_table=target.online_table, details=details, spec=spec, fingerprint=fp)
        if self.options.no_promote:
            if kind is ChangeKind.PROMOTE_STAGED:
                return Change(ChangeKind.UNCHANGED, ObjectType.FEATURE_VIEW, name, from_version, target.number,
                              state=VersionState.STAGED, **{**common, "details": (*details, "matches staged "
                                                                                  f"v{target.number}")})
            if kind is ChangeKind.REUSE_VERSION:
                # --no-promote on a retired snapshot stages it again (never a duplicate).
                return Change(kind, ObjectType.FEATURE_VIEW, name, from_version, target.number,
                              state=VersionState.STAGED,
                              materialization=Materialization(name, target.number, "catch_up"), **common)
            return Change(kind, ObjectType.FEATURE_VIEW, name, from_version, target.number, state=target.state,
                          warnings=(f"feature view '{name}': the pin to v{target.number} is not applied under "
                                    "--no-promote.",), **common)
        if record.hold is not None and target.number in record.hold.versions:
            # §11: an apply never silently undoes a rollback.
            return Change(kind, ObjectType.FEATURE_VIEW, name, from_version, target.number, state=target.state,
                          held=True, warnings=(f"feature view '{name}': v{target.number} is held by a rollback and "
                                               "is not promoted; run `feature-rollout release-hold "
                                               f"{name}` to allow it.",), **common)
        serving = (Serving.SCHEMA_CHANGE if active is None or active.served_hash != target.served_hash
                   else Serving.NONE)
        return Change(kind, ObjectType.FEATURE_VIEW, name, from_version, target.number, promote=True,
                      state=VersionState.ACTIVE, serving=serving,
                      materialization=Materialization(name, target.number, "catch_up"), **common)

    def _amend(self, name: str, active: VersionRecord, spec: Spec, fp: Fingerprint, details: tuple[str, ...]) -> Change:
        if fp.served_hash != active.served_hash:
            raise RecreateNotSuppressible("feature view", name,
                                          "its served schema (features, types or join keys) changes")
        return Change(
            ChangeKind.UPDATE_IN_PLACE, ObjectType.FEATURE_VIEW, name, active.number, active.number,
            state=VersionState.ACTIVE, amend=True, online_table=active.online_table, details=details, spec=spec,
            fingerprint=fp,
            warnings=(f"suppress_recreates: feature view '{name}' v{active.number} is rewritten in place instead of "
                      "getting a new version; its online table is NOT re-materialized and keeps values read with "
                      "the old definition.",),
        )

    # -- deletions and references -----------------------------------------------------------------

    def _deletions(self, entities_after: set[str], sources_after: set[str], views_after: set[str],
                   services_after: set[str]) -> list[Change]:
        changes = []
        for kind, current, after in (
            (ObjectType.FEATURE_SERVICE, self.current.feature_services, services_after),
            (ObjectType.FEATURE_VIEW, self.live_views, views_after),
            (ObjectType.DATA_SOURCE, self.current.data_sources, sources_after),
            (ObjectType.ENTITY, self.current.entities, entities_after),
        ):
            for name in sorted(set(current) - after):
                from_version = None
                if kind is ObjectType.FEATURE_VIEW:
                    from_version = self.live_views[name].active_version
                changes.append(Change(ChangeKind.DELETE, kind, name, from_version=from_version,
                                      serving=Serving.SCHEMA_CHANGE if kind is ObjectType.FEATURE_VIEW
                                      else Serving.NONE))
        for kind, name in sorted(self.desired.deletions):
            if not self.options.partial:
                continue
            existing = {ObjectType.ENTITY: self.current.entities, ObjectType.DATA_SOURCE: self.current.data_sources,
                        ObjectType.FEATURE_VIEW: self.live_views,
                        ObjectType.FEATURE_SERVICE: self.current.feature_services}[kind]
            if name not in existing:
                raise UnknownReferenceError(f"Cannot delete {kind.label} '{name}': it is not registered.")
        return changes

    def _check_dependencies(self, views_after: set[str], entities_after: set[str], sources_after: set[str],
                            services_after: set[str], view_changes: list[Change]) -> None:
        """Nothing that stays may point at something that goes, and services must resolve after the apply."""
        planned = {c.name: c for c in view_changes}
        view_specs: dict[str, Spec] = {}
        for name in views_after:
            if name in planned:
                change = planned[name]
                view_specs[name] = change.spec or {}
            else:
                active = self.live_views[name].active
                view_specs[name] = active.spec if active else {}
        for name, spec in view_specs.items():
            if not spec:
                continue
            if spec["source"] not in sources_after:
                raise DependencyConflictError(
                    f"Cannot delete data source '{spec['source']}': feature view '{name}' still reads it. Delete or "
                    "change the view first (or in the same apply)."
                )
            for entity in spec["entities"]:
                if entity not in entities_after:
                    raise DependencyConflictError(
                        f"Cannot delete entity '{entity}': feature view '{name}' still uses it. Delete or change the "
                        "view first (or in the same apply)."
                    )
        for name in sorted(services_after):
            service = self.desired.feature_services.get(name) or _spec(self.current.feature_services.get(name))
            if service is not None:
                self._check_service(name, service, views_after, planned)

    def _served_after(self, view: str, planned: Mapping[str, Change]) -> tuple[int | None, Spec | None]:
        """The version of ``view`` that is active after the apply, and its spec."""
        record = self.live_views.get(view)
        change = planned.get(view)
        if change is not None and change.promote and change.to_version is not None:
            return change.to_version, self._version_after(view, change.to_version, planned)
        if change is not None and change.kind is ChangeKind.CREATE:
            return None, None
        if record is None or record.active is None:
            return None, None
        if change is not None and change.amend:
            return record.active.number, change.spec
        return record.active.number, record.active.spec

    def _version_after(self, view: str, number: int, planned: Mapping[str, Change]) -> Spec | None:
        change = planned.get(view)
        if change is not None and change.to_version == number and change.kind in (ChangeKind.CREATE,
                                                                                   ChangeKind.NEW_VERSION):
            return change.spec
        record = self.current.feature_views.get(view)
        version = record.version(number) if record else None
        return version.spec if version else None

    def _check_service(self, name: str, spec: Spec, views_after: set[str], planned: Mapping[str, Change]) -> None:
        for projection in spec["features"]:
            view = projection["view"]
            if view not in views_after:
                raise DependencyConflictError(
                    f"Feature service '{name}' uses feature view '{view}', which is not defined (or is being "
                    "deleted). Define the view, or remove it from the service."
                )
            pinned = projection.get("version")
            if pinned is None:
                number, view_spec = self._served_after(view, planned)
                if view_spec is None:
                    # The view has never been served (a new view staged with --no-promote): nothing reads it
                    # yet, and the service resolves once a version is promoted (reads fail clearly until then).
                    continue
                where = f"the active version v{number}"
            else:
                view_spec = self._version_after(view, pinned, planned)
                if view_spec is None:
                    record = self.current.feature_views.get(view)
                    existing = [v.number for v in record.versions] if record else []
                    raise FeatureViewVersionNotFound(view, pinned, existing, hint=f"Feature service '{name}' pins it.")
                where = f"v{pinned}"
            missing = missing_service_features(spec, view, pinned, view_spec)
            if missing:
                available = sorted(f["name"] for f in view_spec["features"])
                raise DependencyConflictError(
                    f"Feature service '{name}' uses {', '.join(f'{view}:{f}' for f in missing)}, which {where} of "
                    f"'{view}' does not have (it has {', '.join(available)}). Change the service, pin it to "
                    "a version that has the features, or stage the view with --no-promote."
                )

    def _check_online_tables(self, view_changes: Sequence[Change]) -> None:
        """Feast's table names can collide ('x_v1' v0 and 'x' v1 are both ``{ws}_x_v1``): refuse that."""
        owners = {v.online_table: (record.name, v.number) for record in self.current.feature_views.values()
                  for v in record.versions}
        for change in view_changes:
            if change.kind not in (ChangeKind.CREATE, ChangeKind.NEW_VERSION) or change.online_table is None:
                continue
            owner = owners.setdefault(change.online_table, (change.name, change.to_version or 0))
            if owner != (change.name, change.to_version):
                raise OnlineTableConflict(change.online_table, f"{change.name} v{change.to_version}",
                                          f"{owner[0]} v{owner[1]}")

    # -- prevent_destroy: DESIGN §8 ------------------------------------------------------------------

    def _check_protection(self, changes: Sequence[Change]) -> None:
        chains = protection_chains(self.current)
        for change in changes:
            chain = chains.get((change.object_type, change.name))
            if chain is None:
                continue
            if change.kind is ChangeKind.RECREATE and self.options.no_promote \
                    and change.object_type in (ObjectType.DATA_SOURCE, ObjectType.ENTITY):
                # Every version snapshots its source and join keys, so replacing the registered source or
                # entity while staging changes nothing served: it is how a protected view stages a move.
                continue
            if change.kind in (ChangeKind.DELETE, ChangeKind.RECREATE):
                action = "delete" if change.kind is ChangeKind.DELETE else "recreate"
                raise PreventDestroyError(change.object_type.label, change.name, action, chain)
            if change.amend and not (self.options.no_promote and change.object_type is not ObjectType.FEATURE_VIEW):
                # suppress_recreates would change what a protected object serves in place, without staging.
                raise PreventDestroyError(change.object_type.label, change.name,
                                          "rewrite in place (suppress_recreates)", chain)
            if change.object_type is ObjectType.FEATURE_VIEW and change.promote and change.from_version is not None:
                record = self.current.feature_views[change.name]
                active = record.version(change.from_version)
                target = record.version(change.to_version) if change.to_version is not None else None
                served: str | None
                if target is not None:
                    served = target.served_hash
                else:
                    served = change.fingerprint.served_hash if change.fingerprint else None
                if active is not None and served != active.served_hash:
                    raise PreventDestroyError(
                        "feature view", change.name,
                        f"serve v{change.to_version} (a different schema than the active v{change.from_version}) "
                        f"by a {_how(change.kind)} for", chain,
                    )


def missing_service_features(service: Spec, view: str, version: int | None, view_spec: Spec) -> list[str]:
    """Features that ``service`` reads from ``view`` (at ``version``; ``None`` = the active one) and
    that ``view_spec`` lacks."""
    available = {f["name"] for f in view_spec["features"]}
    return [f for p in service["features"] if p["view"] == view and p.get("version") == version
            for f in (p.get("features") or []) if f not in available]


def _how(kind: ChangeKind) -> str:
    return {ChangeKind.PIN: "pin", ChangeKind.REUSE_VERSION: "reuse of a snapshot"}.get(kind, "plain apply")


def protection_chains(state: WorkspaceState) -> dict[tuple[ObjectType, str], tuple[str, ...]]:
    """For every protected object of ``state``, the chain that protects it (shortest first).

    ``prevent_destroy`` on a service protects its views, a view protects its source and entities.
    Protection is read from the registry, not from the new definitions: turning it off takes its
    own apply (the two-step removal of §8).
    """
    chains: dict[tuple[ObjectType, str], tuple[str, ...]] = {}
    views = state.live_views()

    def view_spec(name: str) -> Spec | None:
        record = views.get(name)
        if record is None:
            return None
        version = record.active or max(record.versions, key=lambda v: v.number, default=None)
        return version.spec if version else None

    def protect_view(name: str, chain: tuple[str, ...]) -> None:
        key = (ObjectType.FEATURE_VIEW, name)
        if key in chains and len(chains[key]) <= len(chain):
            return
        chains[key] = chain
        spec = view_spec(name)
        if spec is None:
            return
        for kind, dep in [(ObjectType.DATA_SOURCE, spec["source"]),
                          *((ObjectType.ENTITY, e) for e in spec["entities"])]:
            dep_chain = (*chain, f"{kind.label} '{dep}'")
            if (kind, dep) not in chains or len(chains[(kind, dep)]) > len(dep_chain):
                chains[(kind, dep)] = dep_chain

    for kind, objects in ((ObjectType.ENTITY, state.entities), (ObjectType.DATA_SOURCE, state.data_sources)):
        for name, record in objects.items():
            if record.spec.get("prevent_destroy"):
                chains[(kind, name)] = (f"{kind.label} '{name}' has prevent_destroy=True",)
    for name, view in views.items():
        if view.metadata.get("prevent_destroy"):
            protect_view(name, (f"feature view '{name}' has prevent_destroy=True",))
    for name, record in state.feature_services.items():
        if record.spec.get("prevent_destroy"):
            head = f"feature service '{name}' has prevent_destroy=True"
            chains[(ObjectType.FEATURE_SERVICE, name)] = (head,)
            for projection in record.spec["features"]:
                protect_view(projection["view"], (head, f"feature view '{projection['view']}'"))
    return chains


# --- helpers ----------------------------------------------------------------------------------

_VIEW_METADATA_FIELDS = ("description", "tags", "owner", "ttl_seconds", "online", "prevent_destroy")


def _spec(record: ObjectRecord | None) -> Spec | None:
    return record.spec if record is not None else None


def _latest_matching(record: ViewRecord, schema_hash: str) -> VersionRecord | None:
    matches = [v for v in record.versions if v.schema_hash == schema_hash]
    return max(matches, key=lambda v: v.number) if matches else None


def _object_details(kind: ObjectType, old: Spec, new: Spec) -> tuple[str, ...]:
    keys = sorted((set(old) | set(new)) - {"name"})
    return tuple(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key))


def _view_details(old: Spec | None, new: Spec, metadata_changed: bool, old_metadata: Mapping[str, Any]) -> tuple[str,
                                                                                                                 ...]:
    lines: list[str] = []
    if old is not None:
        old_features = {f["name"]: f["dtype"] for f in old["features"]}
        new_features = {f["name"]: f["dtype"] for f in new["features"]}
        for feature in sorted(set(new_features) - set(old_features)):
            lines.append(f"+ feature {feature}: {new_features[feature]}")
        for feature in sorted(set(old_features) - set(new_features)):
            lines.append(f"- feature {feature}: {old_features[feature]}")
        for feature in sorted(set(old_features) & set(new_features)):
            if old_features[feature] != new_features[feature]:
                lines.append(f"~ feature {feature}: {old_features[feature]} -> {new_features[feature]}")
        if old["join_keys"] != new["join_keys"]:
            lines.append(f"~ join keys: {_keys(old)} -> {_keys(new)}")
        old_source, new_source = old["source_spec"], new["source_spec"]
        for key in ("path", "file_format", "timestamp_field", "created_timestamp_column", "field_mapping"):
            if old_source.get(key) != new_source.get(key):
                lines.append(f"~ source {key}: {old_source.get(key)!r} -> {new_source.get(key)!r}")
    if metadata_changed:
        for key in _VIEW_METADATA_FIELDS:
            if old_metadata.get(key) != new.get(key):
                lines.append(f"~ {key}: {old_metadata.get(key)!r} -> {new.get(key)!r}")
        old_docs, new_docs = old_metadata.get("fields", {}), view_metadata(new, old_metadata)["fields"]
        changed_docs = sorted(n for n in set(old_docs) | set(new_docs) if old_docs.get(n) != new_docs.get(n))
        if changed_docs:
            lines.append(f"~ field descriptions/tags: {', '.join(changed_docs)}")
    return tuple(lines)


def version_diff(old: Spec | None, new: Spec) -> tuple[str, ...]:
    """What changed between two version snapshots of a view (features, join keys, source), as plan lines."""
    return _view_details(old, new, False, {})


def _keys(spec: Spec) -> str:
    return ", ".join(f"{k['name']}:{k.get('dtype')}" for k in spec["join_keys"])
