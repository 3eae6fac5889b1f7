"""The registry: the only code that writes the registry tables.

Invariants kept here (each has a test that tries to break it):

- One registry mutation is one transaction.
- Applying a plan compares-and-swaps ``workspaces.revision`` from the plan's base revision; a plan
  made on another revision raises :class:`StalePlanError` and changes nothing. Promote, rollback
  and release-hold also advance the revision, because plans depend on the active pointers and holds.
- Writers serialize per workspace: ``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE``
  on SQLite. Version numbers are decided by the plan and guarded by the primary key.
- Staging never writes the active pointer; version snapshots are append-only (a suppressed
  recreate is the one documented exception, §7).
- Loading a workspace costs a fixed number of queries, whatever the number of views.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from feature_rollout.core.errors import (
    FeatureViewNotFound,
    FeatureViewVersionNotFound,
    OnlineTableConflict,
    PlanNotFoundError,
    PromotionConflict,
    StalePlanError,
    WorkspaceExists,
    WorkspaceNotFound,
)
from feature_rollout.core.fingerprint import Fingerprint, digest
from feature_rollout.core.plan import ChangeKind, DesiredState, ObjectType, Plan, PlanOptions
from feature_rollout.core.plan import plan as compute_plan
from feature_rollout.core.promotion import PointerMove, check_promote, check_rollback
from feature_rollout.core.refs import validate_name
from feature_rollout.core.state import (
    Hold,
    ObjectRecord,
    VersionRecord,
    VersionState,
    ViewRecord,
    WorkspaceState,
)
from feature_rollout.registry import tables as t
from feature_rollout.registry.engine import get_engine, is_postgres, normalize_url, safe_url, transaction
from feature_rollout.registry.migrate import ensure_current

_OBJECT_TABLES: dict[ObjectType, sa.Table] = {
    ObjectType.ENTITY: t.entities,
    ObjectType.DATA_SOURCE: t.data_sources,
    ObjectType.FEATURE_SERVICE: t.feature_services,
}

#: Called inside the apply transaction, before commit, with the plan being applied; the store uses it
#: to create the online tables of new versions so that a version never exists without its table.
BeforeCommit = Callable[[Plan], None]
#: Called inside the promote transaction with (connection, view, version); raises to refuse.
GateCheck = Callable[[Connection, ViewRecord, VersionRecord], None]


@dataclass(frozen=True)
class ApplyResult:
    plan_id: str
    workspace: str
    revision: int
    applied: bool
    created_versions: tuple[tuple[str, int, str], ...] = ()
    promoted: tuple[tuple[str, int | None, int], ...] = ()
    held: tuple[tuple[str, int], ...] = ()
    #: The plan that was applied (set by :meth:`FeatureStore.apply`).
    plan: Plan | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "workspace": self.workspace,
            "revision": self.revision,
            "applied": self.applied,
            "created_versions": [{"view": v, "version": n, "online_table": tbl} for v, n, tbl in self.created_versions],
            "promoted": [{"view": v, "from_version": a, "to_version": b} for v, a, b in self.promoted],
            "held": [{"view": v, "version": n} for v, n in self.held],
        }


@dataclass(frozen=True)
class StoredPlan:
    plan: Plan
    created_at: datetime
    created_by: str | None
    applied_at: datetime | None
    applied_revision: int | None
    rendered: str = field(repr=False, default="")
    #: The run that applied it (``{dag_id}/{run_id}/{task_id}`` when an operator did).
    run_id: str | None = None


class Registry:
    """A registry database (SQLite file or PostgreSQL).

    :param url: a SQLAlchemy URL; ``postgresql://`` uses psycopg 3.
    :param auto_upgrade: migrate the schema to the newest revision on first use.
    """

    def __init__(self, url: str, *, auto_upgrade: bool = True, pool: Mapping[str, int] | None = None) -> None:
        self.url = normalize_url(url)
        self.auto_upgrade = auto_upgrade
        self.pool = dict(pool or {})
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"Registry({safe_url(self.url)!r})"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            engine = get_engine(self.url, self.pool)
            if self.auto_upgrade:
                ensure_current(engine)
            self._engine = engine
        return self._engine

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with transaction(self.engine, write=False) as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with transaction(self.engine, write=True) as conn:
            yield conn

    # --- workspaces -----------------------------------------------------------------------------

    def create_workspace(self, name: str, *, live: bool = False) -> dict[str, Any]:
        validate_name(name, "workspace")
        with self.writing() as conn:
            if self._workspace_row(conn, name) is not None:
                raise WorkspaceExists(name)
            row = {"name": name, "live": live, "revision": 0, "created_at": t.utcnow()}
            try:
                conn.execute(t.workspaces.insert(), row)
            except IntegrityError:
                raise WorkspaceExists(name) from None
        return row

    def list_workspaces(self) -> list[dict[str, Any]]:
        with self.reading() as conn:
            counts: dict[str, int] = dict(conn.execute(
                sa.select(t.feature_views.c.workspace, sa.func.count())
                .where(t.feature_views.c.deleted_at.is_(None)).group_by(t.feature_views.c.workspace)
            ).all())
            rows = conn.execute(sa.select(t.workspaces).order_by(t.workspaces.c.name)).mappings().all()
        return [{**row, "feature_views": counts.get(row["name"], 0)} for row in rows]

    def get_workspace(self, name: str) -> dict[str, Any] | None:
        with self.reading() as conn:
            row = self._workspace_row(conn, name)
        return dict(row) if row is not None else None

    @staticmethod
    def _workspace_row(conn: Connection, name: str, *, lock: bool = False) -> Any:
        query = sa.select(t.workspaces).where(t.workspaces.c.name == name)
        if lock and is_postgres(conn):
            query = query.with_for_update()
        return conn.execute(query).mappings().first()

    # --- state ----------------------------------------------------------------------------------

    def load_state(self, workspace: str, conn: Connection | None = None) -> WorkspaceState:
        """The whole workspace, in six queries."""
        if conn is None:
            with self.reading() as conn:
                return self.load_state(workspace, conn)
        ws = self._workspace_row(conn, workspace)
        objects: dict[ObjectType, dict[str, ObjectRecord]] = {}
        for kind, table in _OBJECT_TABLES.items():
            rows = conn.execute(sa.select(table).where(table.c.workspace == workspace)).mappings()
            objects[kind] = {
                r["name"]: ObjectRecord(r["name"], r["spec"], Fingerprint(r["schema_hash"], r["metadata_hash"],
                                                                          r["served_hash"]))
                for r in rows
            }
        versions: dict[str, list[VersionRecord]] = defaultdict(list)
        v = t.feature_view_versions
        for r in conn.execute(
            sa.select(v.c.name, v.c.version_number, v.c.schema_hash, v.c.served_hash, v.c.state, v.c.spec_json,
                      v.c.online_table, v.c.table_dropped_at)
            .where(v.c.workspace == workspace).order_by(v.c.name, v.c.version_number)
        ):
            versions[r.name].append(_version_record(r))
        views = {}
        for row in conn.execute(sa.select(t.feature_views).where(t.feature_views.c.workspace == workspace)).mappings():
            views[row["name"]] = _view_record(row, versions.get(row["name"], []))
        return WorkspaceState(
            name=workspace,
            live=bool(ws["live"]) if ws is not None else True,
            revision=int(ws["revision"]) if ws is not None else 0,
            exists=ws is not None,
            entities=objects[ObjectType.ENTITY],
            data_sources=objects[ObjectType.DATA_SOURCE],
            feature_services=objects[ObjectType.FEATURE_SERVICE],
            feature_views=views,
        )

    def revision(self, workspace: str) -> int | None:
        """The workspace's revision (one query); ``None`` if it does not exist."""
        with self.reading() as conn:
            value = conn.execute(sa.select(t.workspaces.c.revision).where(t.workspaces.c.name == workspace)).scalar()
        return None if value is None else int(value)

    def get_view(self, workspace: str, name: str) -> ViewRecord:
        """One view with all its versions; raises :class:`FeatureViewNotFound`."""
        with self.reading() as conn:
            row = conn.execute(sa.select(t.feature_views).where(
                t.feature_views.c.workspace == workspace, t.feature_views.c.name == name)).mappings().first()
            if row is None:
                raise FeatureViewNotFound(name, workspace)
            v = t.feature_view_versions
            versions = [_version_record(r) for r in conn.execute(
                sa.select(v.c.name, v.c.version_number, v.c.schema_hash, v.c.served_hash, v.c.state, v.c.spec_json,
                          v.c.online_table, v.c.table_dropped_at)
                .where(v.c.workspace == workspace, v.c.name == name).order_by(v.c.version_number))]
        return _view_record(row, versions)

    def list_versions(self, workspace: str, name: str) -> list[dict[str, Any]]:
        """Every version of a view, oldest first, with the keys of DESIGN §4."""
        v = t.feature_view_versions
        with self.reading() as conn:
            exists = conn.execute(sa.select(t.feature_views.c.name).where(
                t.feature_views.c.workspace == workspace, t.feature_views.c.name == name)).first()
            if exists is None:
                raise FeatureViewNotFound(name, workspace)
            rows = conn.execute(
                sa.select(v.c.version_number, v.c.version_id, v.c.created_at, v.c.state, v.c.schema_hash,
                          v.c.online_table, v.c.created_by, v.c.plan_id, v.c.table_dropped_at)
                .where(v.c.workspace == workspace, v.c.name == name).order_by(v.c.version_number)
            ).mappings().all()
        return [
            {
                "version": f"v{r['version_number']}",
                "version_number": r["version_number"],
                "feature_view_name": name,
                "created_timestamp": r["created_at"],
                "version_id": r["version_id"],
                "state": r["state"],
                "schema_hash": r["schema_hash"],
                "online_table": r["online_table"],
                "created_by": r["created_by"],
                "plan_id": r["plan_id"],
                "table_dropped_at": r["table_dropped_at"],
            }
            for r in rows
        ]

    def audit_log(self, workspace: str, name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Pointer moves, holds, releases and deletions, newest first."""
        p = t.promotions
        query = sa.select(p).where(p.c.workspace == workspace).order_by(p.c.id.desc())
        if name is not None:
            query = query.where(p.c.name == name)
        if limit is not None:
            query = query.limit(limit)
        with self.reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # --- plans ----------------------------------------------------------------------------------

    def save_plan(self, plan: Plan, *, actor: str | None, conn: Connection | None = None) -> None:
        """Store ``plan`` under its id (storing the same content twice is a no-op)."""
        if conn is None:
            with self.writing() as conn:
                return self.save_plan(plan, actor=actor, conn=conn)
        if conn.execute(sa.select(t.plans.c.id).where(t.plans.c.id == plan.id)).first() is not None:
            return None
        record = plan.to_record()
        conn.execute(t.plans.insert(), {
            "id": plan.id,
            "workspace": plan.workspace,
            "base_revision": plan.base_revision,
            "options_json": {**record["options"], "live": plan.live, "workspace_exists": plan.workspace_exists,
                             "format_version": record["format_version"]},
            "changes_json": record["changes"],
            "summary_json": plan.summary,
            "rendered": plan.render(),
            "created_at": t.utcnow(),
            "created_by": actor,
        })
        return None

    def get_plan(self, plan_id: str, workspace: str | None = None) -> StoredPlan:
        with self.reading() as conn:
            row = conn.execute(sa.select(t.plans).where(t.plans.c.id == plan_id)).mappings().first()
        if row is None or (workspace is not None and row["workspace"] != workspace):
            raise PlanNotFoundError(plan_id, workspace or "?")
        return stored_plan(row)

    def list_plans(self, workspace: str, limit: int = 50) -> list[StoredPlan]:
        with self.reading() as conn:
            rows = conn.execute(sa.select(t.plans).where(t.plans.c.workspace == workspace)
                                .order_by(t.plans.c.created_at.desc()).limit(limit)).mappings().all()
        return [stored_plan(r) for r in rows]

    def apply(self, plan_id: str, workspace: str, *, actor: str | None, run_id: str | None = None,
              before_commit: BeforeCommit | None = None) -> tuple[Plan, ApplyResult]:
        """Apply exactly the stored plan ``plan_id``, or raise :class:`StalePlanError`."""
        with self.writing() as conn:
            row = conn.execute(sa.select(t.plans).where(t.plans.c.id == plan_id)).mappings().first()
            if row is None or row["workspace"] != workspace:
                raise PlanNotFoundError(plan_id, workspace)
            plan = stored_plan(row).plan
            result = self._apply_in(conn, plan, applied_at=row["applied_at"], actor=actor, run_id=run_id,
                                    before_commit=before_commit)
        return plan, result

    def applied_result(self, plan_id: str, workspace: str) -> tuple[StoredPlan, ApplyResult] | None:
        """What applying ``plan_id`` did, read back from the registry; ``None`` if it was not applied.

        For a task whose apply committed but which died before it could report it: its retry finds
        the plan applied and can tell whether by itself (``StoredPlan.run_id``)."""
        v, p = t.feature_view_versions, t.promotions
        with self.reading() as conn:
            row = conn.execute(sa.select(t.plans).where(t.plans.c.id == plan_id,
                                                        t.plans.c.workspace == workspace)).mappings().first()
            if row is None or row["applied_at"] is None:
                return None
            created = conn.execute(sa.select(v.c.name, v.c.version_number, v.c.online_table).where(
                v.c.workspace == workspace, v.c.plan_id == plan_id).order_by(v.c.name, v.c.version_number)).all()
            promoted = conn.execute(sa.select(p.c.name, p.c.from_version, p.c.to_version).where(
                p.c.workspace == workspace, p.c.plan_id == plan_id, p.c.kind.in_(("promote", "pin")))
                .order_by(p.c.id)).all()
        stored = stored_plan(row)
        return stored, ApplyResult(
            plan_id=plan_id, workspace=workspace, revision=int(row["applied_revision"]), applied=True,
            created_versions=tuple((r.name, r.version_number, r.online_table) for r in created),
            promoted=tuple((r.name, r.from_version, r.to_version) for r in promoted), plan=stored.plan)

    def plan_and_apply(self, workspace: str, desired: DesiredState, options: PlanOptions, *, actor: str | None,
                       run_id: str | None = None, before_commit: BeforeCommit | None = None,
                       must_exist: bool = False) -> tuple[Plan, ApplyResult]:
        """Plan against the locked current state and apply it, in one transaction."""
        for attempt in range(3):
            try:
                with self.writing() as conn:
                    ws = self._workspace_row(conn, workspace, lock=True)
                    if ws is None and must_exist:
                        raise WorkspaceNotFound(workspace)
                    state = self.load_state(workspace, conn)
                    plan = compute_plan(state, desired, options)
                    self.save_plan(plan, actor=actor, conn=conn)
                    applied_at = conn.execute(sa.select(t.plans.c.applied_at).where(t.plans.c.id == plan.id)).scalar()
                    result = self._apply_in(conn, plan, applied_at=applied_at, actor=actor, run_id=run_id,
                                            before_commit=before_commit)
                return plan, result
            except IntegrityError:
                # Two first applies to a new workspace both insert it (there was no row to lock); plan again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _apply_in(self, conn: Connection, plan: Plan, *, applied_at: datetime | None, actor: str | None,
                  run_id: str | None, before_commit: BeforeCommit | None) -> ApplyResult:
        ws = self._workspace_row(conn, plan.workspace, lock=True)
        if ws is None:
            if plan.workspace_exists:
                raise WorkspaceNotFound(plan.workspace)
            conn.execute(t.workspaces.insert(), {"name": plan.workspace, "live": plan.live, "revision": 0,
                                                 "created_at": t.utcnow()})
            revision = 0
        else:
            revision = int(ws["revision"])
        if applied_at is not None:
            raise StalePlanError(plan.id, plan.workspace, plan.base_revision, revision, already_applied=True)
        if revision != plan.base_revision:
            raise StalePlanError(plan.id, plan.workspace, plan.base_revision, revision)
        if not plan.has_changes:
            # Nothing to write: the revision stays, and the plan stays applicable (it is not marked applied).
            held = tuple((c.name, c.to_version) for c in plan.changes if c.held and c.to_version is not None)
            return ApplyResult(plan_id=plan.id, workspace=plan.workspace, revision=revision, applied=False, held=held)
        new_revision = self._advance_revision(conn, plan.workspace, revision)
        writer = _ChangeWriter(conn, plan, actor=actor, run_id=run_id)
        result = writer.write(new_revision)
        conn.execute(t.plans.update().where(t.plans.c.id == plan.id).values(
            applied_at=t.utcnow(), applied_revision=new_revision, applied_by=actor, run_id=run_id))
        if before_commit is not None:
            before_commit(plan)
        return result

    @staticmethod
    def _advance_revision(conn: Connection, workspace: str, expected: int) -> int:
        updated = conn.execute(
            t.workspaces.update().where(t.workspaces.c.name == workspace, t.workspaces.c.revision == expected)
            .values(revision=expected + 1)
        )
        if updated.rowcount != 1:
            current = conn.execute(sa.select(t.workspaces.c.revision).where(t.workspaces.c.name == workspace)).scalar()
            raise StalePlanError(None, workspace, expected, int(current or 0))
        return expected + 1

    # --- promotion, rollback, holds (§11) ---------------------------------------------------------

    def promote(self, workspace: str, name: str, version: int, *, actor: str | None, run_id: str | None = None,
                reason: str | None = None, gate_check: GateCheck | None = None) -> PointerMove:
        """Move the active pointer of ``name`` to ``version`` (compare-and-swap, audited)."""
        with self.writing() as conn:
            state = self._locked_state(conn, workspace)
            move = check_promote(state, name, version)
            if move.is_noop:
                return move
            record = state.feature_views[name]
            target = record.version(version)
            assert target is not None
            if gate_check is not None:
                gate_check(conn, record, target)
            self._move_pointer(conn, state, move, actor=actor, run_id=run_id, reason=reason)
        return move

    def rollback(self, workspace: str, name: str, *, to: int | None = None, actor: str | None,
                 run_id: str | None = None, reason: str | None = None) -> PointerMove:
        """Promote the previous (or the given) version and hold the current one back from applies."""
        with self.writing() as conn:
            state = self._locked_state(conn, workspace)
            record = state.live_views().get(name)
            previous = self._previous_active(conn, workspace, name, record.active_version) if record else None
            move = check_rollback(state, name, to, previous)
            self._move_pointer(conn, state, move, actor=actor, run_id=run_id, reason=reason)
            assert record is not None and move.from_version is not None
            held = tuple(sorted({*(record.hold.versions if record.hold else ()), move.from_version}))
            hold = Hold(versions=held, reason=reason, at=t.utcnow().isoformat(), actor=actor)
            conn.execute(t.feature_views.update().where(*_view_key(workspace, name)).values(hold_json=hold.to_dict()))
            self._audit(conn, workspace, name, move.from_version, None, "hold", actor, run_id, reason)
        return move

    def release_hold(self, workspace: str, name: str, *, actor: str | None, run_id: str | None = None,
                     reason: str | None = None) -> Hold | None:
        """Lift the rollback hold of ``name``; returns the hold that was lifted (``None`` if there was none)."""
        with self.writing() as conn:
            state = self._locked_state(conn, workspace)
            record = state.live_views().get(name)
            if record is None:
                raise FeatureViewNotFound(name, workspace)
            if record.hold is None:
                return None
            conn.execute(t.feature_views.update().where(*_view_key(workspace, name))
                         .values(hold_json=None, updated_at=t.utcnow()))
            for held in record.hold.versions:
                self._audit(conn, workspace, name, held, None, "release", actor, run_id, reason)
            self._advance_revision(conn, workspace, state.revision)
        return record.hold

    def _locked_state(self, conn: Connection, workspace: str) -> WorkspaceState:
        if self._workspace_row(conn, workspace, lock=True) is None:
            raise WorkspaceNotFound(workspace)
        return self.load_state(workspace, conn)

    @staticmethod
    def _previous_active(conn: Connection, workspace: str, name: str, active: int | None) -> int | None:
        """The version that was active before ``active`` became active, from the audit log."""
        if active is None:
            return None
        p = t.promotions
        row = conn.execute(
            sa.select(p.c.from_version).where(p.c.workspace == workspace, p.c.name == name,
                                              p.c.to_version == active, p.c.kind.in_(("promote", "pin")))
            .order_by(p.c.id.desc()).limit(1)
        ).first()
        return row[0] if row is not None else None

    def _move_pointer(self, conn: Connection, state: WorkspaceState, move: PointerMove, *, actor: str | None,
                      run_id: str | None, reason: str | None) -> None:
        fv = t.feature_views
        current = fv.c.active_version.is_(None) if move.from_version is None else \
            fv.c.active_version == move.from_version
        updated = conn.execute(fv.update().where(*_view_key(state.name, move.name), current)
                               .values(active_version=move.to_version, pinned_schema_hash=None,
                                       updated_at=t.utcnow()))
        if updated.rowcount != 1:
            found = conn.execute(sa.select(fv.c.active_version).where(*_view_key(state.name, move.name))).scalar()
            raise PromotionConflict(move.name, move.from_version, found)
        _set_states(conn, state.name, move.name, move.from_version, move.to_version)
        self._audit(conn, state.name, move.name, move.from_version, move.to_version, move.kind, actor, run_id, reason)
        self._advance_revision(conn, state.name, state.revision)

    @staticmethod
    def _audit(conn: Connection, workspace: str, name: str, from_version: int | None, to_version: int | None,
               kind: str, actor: str | None, run_id: str | None, reason: str | None,
               plan_id: str | None = None) -> None:
        conn.execute(t.promotions.insert(), {
            "workspace": workspace, "name": name, "from_version": from_version, "to_version": to_version,
            "kind": kind, "actor": actor, "run_id": run_id, "plan_id": plan_id, "reason": reason, "at": t.utcnow(),
        })

    def mark_tables_dropped(self, workspace: str, name: str, versions: Sequence[int]) -> None:
        """Record that ``prune`` dropped these versions' online tables (their history stays)."""
        if not versions:
            return
        v = t.feature_view_versions
        with self.writing() as conn:
            ws = self._workspace_row(conn, workspace, lock=True)
            conn.execute(v.update().where(v.c.workspace == workspace, v.c.name == name,
                                          v.c.version_number.in_(list(versions)))
                         .values(table_dropped_at=t.utcnow()))
            # What can be read changed: readers that cache the state by revision must see it.
            self._advance_revision(conn, workspace, int(ws["revision"]))

    def get_version(self, workspace: str, name: str, version: int | None = None) -> tuple[ViewRecord, VersionRecord]:
        """A view and its active version (or ``version``); raises if either is missing."""
        record = self.get_view(workspace, name)
        if record.deleted:
            raise FeatureViewNotFound(name, workspace)
        number = record.active_version if version is None else version
        target = record.version(number) if number is not None else None
        if target is None:
            if number is None:
                raise FeatureViewVersionNotFound(
                    name, record.highest_version, [v.number for v in record.versions],
                    hint=f"'{name}' has no active version yet; promote one or read a version with '{name}@vN'.")
            raise FeatureViewVersionNotFound(name, number, [v.number for v in record.versions])
        return record, target


def _view_key(workspace: str, name: str) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
    return t.feature_views.c.workspace == workspace, t.feature_views.c.name == name


def _set_states(conn: Connection, workspace: str, name: str, retired: int | None, active: int) -> None:
    v = t.feature_view_versions
    if retired is not None:
        conn.execute(v.update().where(v.c.workspace == workspace, v.c.name == name, v.c.version_number == retired)
                     .values(state=VersionState.RETIRED.value))
    conn.execute(v.update().where(v.c.workspace == workspace, v.c.name == name, v.c.version_number == active)
                 .values(state=VersionState.ACTIVE.value))


def _version_record(row: Any) -> VersionRecord:
    return VersionRecord(number=row.version_number, schema_hash=row.schema_hash, served_hash=row.served_hash,
                         state=VersionState(row.state), spec=row.spec_json, online_table=row.online_table,
                         table_dropped=row.table_dropped_at is not None)


def _view_record(row: Any, versions: Sequence[VersionRecord]) -> ViewRecord:
    return ViewRecord(
        name=row["name"], active_version=row["active_version"], metadata=row["metadata_json"],
        metadata_hash=row["metadata_hash"], hold=Hold.from_dict(row["hold_json"]),
        deleted=row["deleted_at"] is not None, versions=tuple(versions),
        pinned_schema_hash=row["pinned_schema_hash"],
    )


def stored_plan(row: Any) -> StoredPlan:
    options = dict(row["options_json"])
    record = {
        "id": row["id"],
        "workspace": row["workspace"],
        "base_revision": row["base_revision"],
        "live": options.pop("live", True),
        "workspace_exists": options.pop("workspace_exists", True),
        "options": {k: options[k] for k in ("no_promote", "suppress_recreates", "partial") if k in options},
        "changes": row["changes_json"],
    }
    return StoredPlan(plan=Plan.from_record(record), created_at=row["created_at"], created_by=row["created_by"],
                      applied_at=row["applied_at"], applied_revision=row["applied_revision"], rendered=row["rendered"],
                      run_id=row["run_id"])


class _ChangeWriter:
    """Turns a plan's changes into batched statements (one ``executemany`` per statement shape)."""

    def __init__(self, conn: Connection, plan: Plan, *, actor: str | None, run_id: str | None) -> None:
        self.conn = conn
        self.plan = plan
        self.actor = actor
        self.run_id = run_id
        self.now = t.utcnow()
        self.batches: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def write(self, revision: int) -> ApplyResult:
        created: list[tuple[str, int, str]] = []
        promoted: list[tuple[str, int | None, int]] = []
        held: list[tuple[str, int]] = []
        for change in self.plan.changes:
            if change.object_type is ObjectType.FEATURE_VIEW:
                self._view(change, created, promoted, held)
            else:
                self._object(change)
        self._check_online_tables()
        self._flush()
        return ApplyResult(plan_id=self.plan.id, workspace=self.plan.workspace, revision=revision, applied=True,
                           created_versions=tuple(created), promoted=tuple(promoted), held=tuple(held))

    def _object(self, change: Any) -> None:
        kind: ChangeKind = change.kind
        table = change.object_type.value
        key = {"b_ws": self.plan.workspace, "b_name": change.name}
        if kind is ChangeKind.CREATE:
            self.batches[f"insert:{table}"].append({
                "workspace": self.plan.workspace, "name": change.name, **self._definition(change)})
        elif kind in (ChangeKind.UPDATE_IN_PLACE, ChangeKind.RECREATE):
            self.batches[f"update:{table}"].append({**key, **self._definition(change)})
        elif kind is ChangeKind.DELETE:
            self.batches[f"delete:{table}"].append(key)

    def _definition(self, change: Any) -> dict[str, Any]:
        fp: Fingerprint = change.fingerprint
        return {"spec": dict(change.spec), "schema_hash": fp.schema_hash, "metadata_hash": fp.metadata_hash,
                "served_hash": fp.served_hash, "updated_at": self.now}

    def _view(self, change: Any, created: list[tuple[str, int, str]], promoted: list[tuple[str, int | None, int]],
              held: list[tuple[str, int]]) -> None:
        ws, name, kind = self.plan.workspace, change.name, change.kind
        key = {"b_ws": ws, "b_name": name}
        if kind is ChangeKind.DELETE:
            self.batches["view:delete"].append({**key, "active_version": None, "deleted_at": self.now})
            if change.from_version is not None:
                self.batches["version:state"].append({**key, "b_num": change.from_version, "state": "retired"})
            self._audit(name, change.from_version, None, "delete")
            return
        if kind is ChangeKind.CREATE:
            self.batches["view:insert"].append({
                "workspace": ws, "name": name, "active_version": 0 if change.promote else None,
                "metadata_json": dict(change.metadata), "metadata_hash": digest(change.metadata),
                "hold_json": None, "pinned_schema_hash": None, "deleted_at": None, "created_at": self.now,
                "updated_at": self.now,
            })
        elif change.updates_metadata:
            self.batches["view:metadata"].append({
                **key, "metadata_json": dict(change.metadata), "metadata_hash": digest(change.metadata),
                "deleted_at": None, "updated_at": self.now,
            })
        if kind in (ChangeKind.CREATE, ChangeKind.NEW_VERSION):
            fp = change.fingerprint
            self.batches["version:insert"].append({
                "workspace": ws, "name": name, "version_number": change.to_version, "version_id": str(uuid.uuid4()),
                "spec_json": dict(change.spec), "schema_hash": fp.schema_hash, "served_hash": fp.served_hash,
                "state": VersionState.ACTIVE.value if change.promote else VersionState.STAGED.value,
                "online_table": change.online_table, "plan_id": self.plan.id, "created_at": self.now,
                "created_by": self.actor,
            })
            created.append((name, change.to_version, change.online_table))
        if change.amend:
            fp = change.fingerprint
            self.batches["version:amend"].append({**key, "b_num": change.to_version, "spec_json": dict(change.spec),
                                                  "schema_hash": fp.schema_hash, "served_hash": fp.served_hash})
        if change.held:
            held.append((name, change.to_version))
            return
        if kind is ChangeKind.REUSE_VERSION and not change.promote and change.state is VersionState.STAGED:
            self.batches["version:state"].append({**key, "b_num": change.to_version, "state": "staged"})
        if change.promote and kind is not ChangeKind.CREATE:
            self.batches["view:pointer"].append({
                **key, "active_version": change.to_version,
                "pinned_schema_hash": change.fingerprint.schema_hash if kind is ChangeKind.PIN else None,
                "deleted_at": None, "updated_at": self.now,
            })
            if change.from_version is not None:
                self.batches["version:state"].append({**key, "b_num": change.from_version, "state": "retired"})
            if kind is not ChangeKind.NEW_VERSION:
                self.batches["version:state"].append({**key, "b_num": change.to_version, "state": "active"})
        if change.promote:
            promoted.append((name, change.from_version, change.to_version))
            self._audit(name, change.from_version, change.to_version, "pin" if kind is ChangeKind.PIN else "promote")

    def _check_online_tables(self) -> None:
        """The plan checked its own workspace; another workspace of this registry may own a name too."""
        wanted = {row["online_table"]: row for row in self.batches.get("version:insert", [])}
        if not wanted:
            return
        v = t.feature_view_versions
        clash = self.conn.execute(sa.select(v.c.workspace, v.c.name, v.c.version_number, v.c.online_table)
                                  .where(v.c.online_table.in_(wanted))).first()
        if clash is not None:
            row = wanted[clash.online_table]
            raise OnlineTableConflict(clash.online_table, f"{row['name']} v{row['version_number']}",
                                      f"{clash.name} v{clash.version_number} in workspace '{clash.workspace}'")

    def _audit(self, name: str, from_version: int | None, to_version: int | None, kind: str) -> None:
        self.batches["audit"].append({
            "workspace": self.plan.workspace, "name": name, "from_version": from_version, "to_version": to_version,
            "kind": kind, "actor": self.actor, "run_id": self.run_id, "plan_id": self.plan.id,
            "reason": f"apply of plan {self.plan.id}", "at": self.now,
        })

    def _flush(self) -> None:
        b = sa.bindparam
        fv, v = t.feature_views, t.feature_view_versions

        def where_view(table: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
            return table.c.workspace == b("b_ws"), table.c.name == b("b_name")

        statements: list[tuple[str, Any]] = []
        for kind, table in _OBJECT_TABLES.items():
            name = kind.value
            statements += [
                (f"delete:{name}", table.delete().where(*where_view(table))),
                (f"insert:{name}", table.insert()),
                (f"update:{name}", table.update().where(*where_view(table))),
            ]
        statements += [
            ("view:insert", fv.insert()),
            ("view:metadata", fv.update().where(*where_view(fv))),
            ("view:delete", fv.update().where(*where_view(fv))),
            ("version:insert", v.insert()),
            ("version:amend", v.update().where(*where_view(v), v.c.version_number == b("b_num"))),
            ("view:pointer", fv.update().where(*where_view(fv))),
            # A promotion retires one version and activates another of the same view: never the same row.
            ("version:state", v.update().where(*where_view(v), v.c.version_number == b("b_num"))),
            ("audit", t.promotions.insert()),
        ]
        for key, statement in statements:
            rows = self.batches.get(key)
            if rows:
                self.conn.execute(statement, rows)
