"""The UI's read model (DESIGN §13): what each page and JSON endpoint shows, in a fixed number of
queries per page whatever the number of views, versions or runs (lists are paginated; related rows
are fetched for a whole page at once, never per row).

Every function takes an open registry connection and returns plain dicts. Nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feature_rollout.core.intervals import Interval, merge
from feature_rollout.core.plan import version_diff
from feature_rollout.core.state import Hold
from feature_rollout.parity import ParityReport
from feature_rollout.registry import tables as t
from feature_rollout.registry.ledger import FAILED, SUCCEEDED, parity_reports_query, runs_query
from feature_rollout.registry.registry import stored_plan

MAX_PER_PAGE = 200


@dataclass(frozen=True)
class Page:
    """One page of a list: 1-based ``number``, ``per_page`` rows, ``total`` rows in all."""

    number: int
    per_page: int
    total: int

    @classmethod
    def of(cls, number: int, per_page: int, total: int) -> Page:
        per_page = max(1, min(per_page, MAX_PER_PAGE))
        last = max(1, -(-total // per_page))
        return cls(min(max(1, number), last), per_page, total)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    def to_dict(self) -> dict[str, int]:
        return {"page": self.number, "per_page": self.per_page, "total": self.total, "pages": self.pages}


def airflow_run(run_id: str | None) -> dict[str, str] | None:
    """Split a recorded ``{dag_id}/{run_id}/{task_id}`` (see the operators) into its parts."""
    if not run_id or run_id.count("/") < 2:
        return None
    dag_id, rest = run_id.split("/", 1)
    run, task_id = rest.rsplit("/", 1)
    return {"dag_id": dag_id, "run_id": run, "task_id": task_id}


def _count(conn: Connection, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def _latest_per_view(conn: Connection, table: sa.Table, workspace: str, names: Sequence[str]) -> dict[str, Any]:
    """The newest row (highest id) of ``table`` for each of ``names``, in one query."""
    newest = (sa.select(sa.func.max(table.c.id).label("id"))
              .where(table.c.workspace == workspace, table.c.name.in_(names)).group_by(table.c.name).subquery())
    rows = conn.execute(sa.select(table).join(newest, table.c.id == newest.c.id)).mappings()
    return {row["name"]: row for row in rows}


# --- workspaces and views --------------------------------------------------------------------------


def workspaces(conn: Connection) -> list[dict[str, Any]]:
    """Every workspace with its number of views and staged versions (three queries)."""
    fv, v = t.feature_views, t.feature_view_versions
    views: dict[str, int] = dict(conn.execute(
        sa.select(fv.c.workspace, sa.func.count()).where(fv.c.deleted_at.is_(None)).group_by(fv.c.workspace)).all())
    staged: dict[str, int] = dict(conn.execute(
        sa.select(v.c.workspace, sa.func.count()).where(v.c.state == "staged").group_by(v.c.workspace)).all())
    rows = conn.execute(sa.select(t.workspaces).order_by(t.workspaces.c.live.desc(), t.workspaces.c.name)).mappings()
    return [{"name": r["name"], "live": bool(r["live"]), "revision": r["revision"], "created_at": r["created_at"],
             "feature_views": views.get(r["name"], 0), "staged_versions": staged.get(r["name"], 0)} for r in rows]


def workspace(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(t.workspaces).where(t.workspaces.c.name == name)).mappings().first()
    return None if row is None else {"name": row["name"], "live": bool(row["live"]), "revision": row["revision"],
                                     "created_at": row["created_at"]}


def views(conn: Connection, workspace: str, *, page: int = 1, per_page: int = 50,
          search: str | None = None) -> tuple[list[dict[str, Any]], Page]:
    """One page of a workspace's views (by name), each with its active and staged versions, hold,
    protection, last materialization run and last parity report: six queries for any page size."""
    fv, v = t.feature_views, t.feature_view_versions
    where = [fv.c.workspace == workspace, fv.c.deleted_at.is_(None)]
    if search:
        where.append(fv.c.name.contains(search, autoescape=True))
    pager = Page.of(page, per_page, _count(conn, fv, *where))
    rows = conn.execute(sa.select(fv).where(*where).order_by(fv.c.name).offset(pager.offset)
                        .limit(pager.per_page)).mappings().all()
    names = [r["name"] for r in rows]
    staged: dict[str, list[int]] = defaultdict(list)
    counts: dict[str, int] = {}
    if names:
        for name, number in conn.execute(sa.select(v.c.name, v.c.version_number).where(
                v.c.workspace == workspace, v.c.name.in_(names), v.c.state == "staged").order_by(v.c.version_number)):
            staged[name].append(number)
        counts = dict(conn.execute(sa.select(v.c.name, sa.func.count()).where(
            v.c.workspace == workspace, v.c.name.in_(names)).group_by(v.c.name)).all())
    runs = _latest_per_view(conn, t.materialization_runs, workspace, names) if names else {}
    reports = _latest_per_view(conn, t.parity_reports, workspace, names) if names else {}
    result = []
    for row in rows:
        name, meta = row["name"], row["metadata_json"] or {}
        run, report = runs.get(name), reports.get(name)
        result.append({
            "name": name,
            "description": meta.get("description") or "",
            "owner": meta.get("owner") or "",
            "tags": dict(meta.get("tags") or {}),
            "prevent_destroy": bool(meta.get("prevent_destroy")),
            "active_version": row["active_version"],
            "staged_versions": staged.get(name, []),
            "versions": counts.get(name, 0),
            "hold": _hold(row["hold_json"]),
            "updated_at": row["updated_at"],
            "last_materialization": None if run is None else _run(run),
            "last_parity": None if report is None else _report_summary(report),
        })
    return result, pager


def _hold(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    hold = Hold.from_dict(data)
    return None if hold is None else hold.to_dict()


def _run(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "version": row["version_number"], "start": row["start"], "end": row["end"],
            "status": row["status"], "rows_read": row["rows_read"], "rows_written": row["rows_written"],
            "started_at": row["started_at"], "finished_at": row["finished_at"], "run_id": row["run_id"],
            "airflow": airflow_run(row["run_id"]), "error": row["error"]}


def _report_summary(row: Any) -> dict[str, Any]:
    summary = row["summary_json"] or {}
    return {"id": row["id"], "passed": bool(row["passed"]), "baseline": row["baseline_ref"],
            "candidate": row["candidate_ref"], "candidate_version": row["candidate_version"],
            "created_at": row["created_at"], "mismatch_ratio": summary.get("mismatch_ratio"),
            "rows_compared": summary.get("rows_compared"), "run_id": row["run_id"],
            "airflow": airflow_run(row["run_id"])}


# --- one view ----------------------------------------------------------------------------------------


def view(conn: Connection, workspace: str, name: str, *, versions_page: int = 1, versions_per_page: int = 20,
         events_page: int = 1, events_per_page: int = 50, runs_page: int = 1, runs_per_page: int = 50,
         reports: int = 10) -> dict[str, Any] | None:
    """Everything the view page shows, in eleven queries however many versions, events and runs exist."""
    fv = t.feature_views
    row = conn.execute(sa.select(fv).where(fv.c.workspace == workspace, fv.c.name == name)).mappings().first()
    if row is None:
        return None
    meta = row["metadata_json"] or {}
    versions, versions_pager = _versions(conn, workspace, name, versions_page, versions_per_page)
    numbers = [v["version_number"] for v in versions]
    coverage = _coverage(conn, workspace, name, numbers)
    latest_reports = _latest_report_per_version(conn, workspace, name, numbers)
    for version in versions:
        version.update(coverage.get(version["version_number"], {"covered": [], "failed": []}))
        version["last_parity"] = latest_reports.get(version["version_number"])
    events, events_pager = timeline(conn, workspace, name, page=events_page, per_page=events_per_page)
    runs, runs_pager = _runs(conn, workspace, name, runs_page, runs_per_page)
    return {
        "workspace": workspace,
        "name": name,
        "description": meta.get("description") or "",
        "owner": meta.get("owner") or "",
        "tags": dict(meta.get("tags") or {}),
        "fields": dict(meta.get("fields") or {}),
        "ttl_seconds": meta.get("ttl_seconds"),
        "online": meta.get("online"),
        "prevent_destroy": bool(meta.get("prevent_destroy")),
        "active_version": row["active_version"],
        "hold": _hold(row["hold_json"]),
        "deleted_at": row["deleted_at"],
        "created_at": row["created_at"],
        "versions": versions,
        "versions_page": versions_pager.to_dict(),
        "timeline": events,
        "timeline_page": events_pager.to_dict(),
        "runs": runs,
        "runs_page": runs_pager.to_dict(),
        "parity_reports": parity_reports(conn, workspace, name, limit=reports),
    }


def _versions(conn: Connection, workspace: str, name: str, page: int,
              per_page: int) -> tuple[list[dict[str, Any]], Page]:
    """A page of versions, newest first, each with its schema diff against the version before it
    (fetched as one extra row past the page's end)."""
    v, p = t.feature_view_versions, t.plans
    where = (v.c.workspace == workspace, v.c.name == name)
    pager = Page.of(page, per_page, _count(conn, v, *where))
    # The page's version numbers first, from the primary key's index alone (a deep OFFSET stays cheap),
    # then their rows. (As one statement with a subquery, PostgreSQL without fresh statistics re-ran
    # the subquery for every version: 0.4 s at page 40 of 1,000 versions.)
    numbers = list(conn.execute(sa.select(v.c.version_number).where(*where).order_by(v.c.version_number.desc())
                                .offset(pager.offset).limit(pager.per_page + 1)).scalars())
    rows = conn.execute(
        sa.select(v, p.c.run_id.label("plan_run_id"))
        .select_from(v.outerjoin(p, p.c.id == v.c.plan_id))
        .where(*where, v.c.version_number.in_(numbers)).order_by(v.c.version_number.desc())
    ).mappings().all()
    result = []
    for index, r in enumerate(rows[:pager.per_page]):
        previous = rows[index + 1] if index + 1 < len(rows) else None
        spec = r["spec_json"]
        result.append({
            "version": f"v{r['version_number']}",
            "version_number": r["version_number"],
            "version_id": r["version_id"],
            "state": r["state"],
            "created_at": r["created_at"],
            "created_by": r["created_by"],
            "plan_id": r["plan_id"],
            "run_id": r["plan_run_id"],
            "airflow": airflow_run(r["plan_run_id"]),
            "online_table": r["online_table"],
            "table_dropped_at": r["table_dropped_at"],
            "schema_hash": r["schema_hash"],
            "features": [{"name": f["name"], "dtype": f["dtype"]} for f in spec.get("features", [])],
            "join_keys": [k["name"] for k in spec.get("join_keys", [])],
            "previous_version": None if previous is None else previous["version_number"],
            "diff": list(version_diff(previous["spec_json"] if previous is not None else None, spec))
            if previous is not None else [],
        })
    return result, pager


def _coverage(conn: Connection, workspace: str, name: str,
              numbers: Sequence[int]) -> dict[int, dict[str, list[dict[str, datetime]]]]:
    """Per version: the merged intervals its succeeded runs cover, and the failed runs' intervals
    that no succeeded run covers (one query)."""
    if not numbers:
        return {}
    m = t.materialization_runs
    covered: dict[int, list[Interval]] = defaultdict(list)
    failed: dict[int, list[Interval]] = defaultdict(list)
    for number, start, end, status in conn.execute(
            sa.select(m.c.version_number, m.c.start, m.c.end, m.c.status).where(
                m.c.workspace == workspace, m.c.name == name, m.c.version_number.in_(numbers),
                m.c.status.in_((SUCCEEDED, FAILED)))):
        (covered if status == SUCCEEDED else failed)[number].append(Interval(start, end))
    result = {}
    for number in numbers:
        done = merge(covered[number])
        result[number] = {"covered": _intervals(done), "failed": _intervals(_uncovered(failed[number], done))}
    return result


def _uncovered(items: Iterable[Interval], covered: Sequence[Interval]) -> list[Interval]:
    """The parts of ``items`` outside ``covered`` (merged)."""
    out = []
    for item in merge(items):
        cursor = item.start
        for c in covered:
            if c.end <= cursor or c.start >= item.end:
                continue
            if c.start > cursor:
                out.append(Interval(cursor, c.start))
            cursor = max(cursor, c.end)
        if cursor < item.end:
            out.append(Interval(cursor, item.end))
    return out


def _intervals(items: Iterable[Interval]) -> list[dict[str, datetime]]:
    return [{"start": i.start, "end": i.end} for i in items]


def _latest_report_per_version(conn: Connection, workspace: str, name: str,
                               numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not numbers:
        return {}
    r = t.parity_reports
    newest = (sa.select(sa.func.max(r.c.id).label("id"))
              .where(r.c.workspace == workspace, r.c.name == name, r.c.candidate_version.in_(numbers))
              .group_by(r.c.candidate_version).subquery())
    rows = conn.execute(sa.select(r).join(newest, r.c.id == newest.c.id)).mappings()
    return {row["candidate_version"]: _report_summary(row) for row in rows}


def timeline(conn: Connection, workspace: str, name: str, *, page: int = 1,
             per_page: int = 50) -> tuple[list[dict[str, Any]], Page]:
    """The view's history, newest first: version creations (``created`` when the same apply served
    the version, else ``staged``) and every audit row (promote, pin, rollback, hold, release, delete)."""
    v, p, plans = t.feature_view_versions, t.promotions, t.plans
    served = sa.alias(p)
    created = (
        sa.select(
            sa.case((served.c.id.is_(None), sa.literal("staged")), else_=sa.literal("created")).label("kind"),
            sa.literal(None, sa.Integer).label("from_version"),
            v.c.version_number.label("to_version"),
            v.c.created_by.label("actor"), plans.c.run_id.label("run_id"), v.c.plan_id.label("plan_id"),
            sa.literal(None, sa.Text).label("reason"), v.c.created_at.label("at"),
            sa.literal(0).label("seq"),
        )
        .select_from(v.outerjoin(plans, plans.c.id == v.c.plan_id).outerjoin(served, sa.and_(
            served.c.workspace == v.c.workspace, served.c.name == v.c.name, served.c.plan_id == v.c.plan_id,
            served.c.to_version == v.c.version_number, served.c.kind.in_(("promote", "pin")))))
        .where(v.c.workspace == workspace, v.c.name == name)
    )
    audited = sa.select(p.c.kind, p.c.from_version, p.c.to_version, p.c.actor, p.c.run_id, p.c.plan_id, p.c.reason,
                        p.c.at, p.c.id.label("seq")).where(p.c.workspace == workspace, p.c.name == name)
    events = sa.union_all(created, audited).subquery()
    total = _count(conn, v, v.c.workspace == workspace, v.c.name == name) + \
        _count(conn, p, p.c.workspace == workspace, p.c.name == name)
    pager = Page.of(page, per_page, total)
    rows = conn.execute(sa.select(events).order_by(events.c.at.desc(), events.c.seq.desc())
                        .offset(pager.offset).limit(pager.per_page)).mappings()
    return [{"kind": r["kind"], "from_version": r["from_version"], "to_version": r["to_version"],
             "actor": r["actor"], "run_id": r["run_id"], "airflow": airflow_run(r["run_id"]),
             "plan_id": r["plan_id"], "reason": r["reason"], "at": r["at"]} for r in rows], pager


def _runs(conn: Connection, workspace: str, name: str, page: int,
          per_page: int) -> tuple[list[dict[str, Any]], Page]:
    m = t.materialization_runs
    pager = Page.of(page, per_page, _count(conn, m, m.c.workspace == workspace, m.c.name == name))
    rows = conn.execute(runs_query(workspace, name).offset(pager.offset).limit(pager.per_page)).mappings()
    return [_run(r) for r in rows], pager


def parity_reports(conn: Connection, workspace: str, name: str, *, limit: int = 10,
                   worst: int = 5) -> list[dict[str, Any]]:
    """The newest reports with their per-column mismatch counts and ``worst`` worst examples."""
    rows = conn.execute(parity_reports_query(workspace, name).limit(limit)).mappings()
    result = []
    for row in rows:
        report = ParityReport.from_row(dict(row))
        data = report.to_dict()
        data["examples"] = data["examples"][:worst]
        data["created_at"] = report.created_at
        data["candidate_version"] = row["candidate_version"]
        data["airflow"] = airflow_run(report.run_id)
        result.append(data)
    return result


# --- plans -------------------------------------------------------------------------------------------


def plans(conn: Connection, workspace: str, *, page: int = 1, per_page: int = 50) -> tuple[list[dict[str, Any]], Page]:
    """A page of stored plans, newest first (without their changes: the plan page has those)."""
    p = t.plans
    pager = Page.of(page, per_page, _count(conn, p, p.c.workspace == workspace))
    rows = conn.execute(
        sa.select(p.c.id, p.c.base_revision, p.c.summary_json, p.c.created_at, p.c.created_by, p.c.applied_at,
                  p.c.applied_revision, p.c.applied_by, p.c.run_id, p.c.options_json)
        .where(p.c.workspace == workspace).order_by(p.c.created_at.desc(), p.c.id).offset(pager.offset)
        .limit(pager.per_page)
    ).mappings()
    return [_plan_row(r) for r in rows], pager


def plan(conn: Connection, workspace: str, plan_id: str) -> dict[str, Any] | None:
    """A stored plan: its rendered diff, its JSON (docs/plan-json.md) and whether/when it was applied."""
    p = t.plans
    row = conn.execute(sa.select(p).where(p.c.id == plan_id, p.c.workspace == workspace)).mappings().first()
    if row is None:
        return None
    return {**_plan_row(row), "rendered": row["rendered"], "json": stored_plan(row).plan.to_json()}


def _plan_row(row: Any) -> dict[str, Any]:
    options = row["options_json"] or {}
    return {"id": row["id"], "base_revision": row["base_revision"], "summary": dict(row["summary_json"] or {}),
            "no_promote": bool(options.get("no_promote")), "created_at": row["created_at"],
            "created_by": row["created_by"], "applied_at": row["applied_at"],
            "applied_revision": row["applied_revision"], "applied_by": row["applied_by"], "run_id": row["run_id"],
            "airflow": airflow_run(row["run_id"])}


# --- one DAG -----------------------------------------------------------------------------------------


def dag_activity(conn: Connection, dag_id: str, *, limit: int = 100) -> dict[str, list[dict[str, Any]]]:
    """What runs of ``dag_id`` did to the registry, newest first (four queries)."""
    prefix = f"{dag_id}/"
    p, m, r, plans_ = t.promotions, t.materialization_runs, t.parity_reports, t.plans
    moves = conn.execute(sa.select(p).where(p.c.run_id.startswith(prefix, autoescape=True))
                         .order_by(p.c.id.desc()).limit(limit)).mappings()
    runs = conn.execute(sa.select(m).where(m.c.run_id.startswith(prefix, autoescape=True))
                        .order_by(m.c.id.desc()).limit(limit)).mappings()
    reports = conn.execute(sa.select(r).where(r.c.run_id.startswith(prefix, autoescape=True))
                           .order_by(r.c.id.desc()).limit(limit)).mappings()
    applied = conn.execute(
        sa.select(plans_.c.id, plans_.c.workspace, plans_.c.base_revision, plans_.c.summary_json,
                  plans_.c.created_at, plans_.c.created_by, plans_.c.applied_at, plans_.c.applied_revision,
                  plans_.c.applied_by, plans_.c.run_id, plans_.c.options_json)
        .where(plans_.c.run_id.startswith(prefix, autoescape=True))
        .order_by(plans_.c.applied_at.desc()).limit(limit)).mappings()
    return {
        "pointer_moves": [{"workspace": row["workspace"], "view": row["name"], "kind": row["kind"],
                           "from_version": row["from_version"], "to_version": row["to_version"],
                           "actor": row["actor"], "reason": row["reason"], "at": row["at"],
                           "run_id": row["run_id"], "airflow": airflow_run(row["run_id"])} for row in moves],
        "materializations": [{"workspace": row["workspace"], "view": row["name"], **_run(row)} for row in runs],
        "parity_reports": [{"workspace": row["workspace"], "view": row["name"], **_report_summary(row)}
                           for row in reports],
        "plans": [{"workspace": row["workspace"], **_plan_row(row)} for row in applied],
    }
