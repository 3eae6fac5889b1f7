"""The per-version materialization ledger and the stored parity reports (DESIGN §5, §9, §10).

Invariant: an interval counts as covered only through a ``succeeded`` run, and a run is marked
``succeeded`` only after every chunk of it has been written and committed to the online store. A
run starts as ``running`` in its own committed transaction; a killed process leaves it
``running`` (never covering anything) until a later successful run over the same interval marks it
``superseded``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from feature_rollout.core.intervals import Interval, merge
from feature_rollout.registry import tables as t
from feature_rollout.registry.registry import Registry

RUNNING, SUCCEEDED, FAILED, SUPERSEDED = "running", "succeeded", "failed", "superseded"
_ERROR_LIMIT = 4000


class Ledger:
    """Materialization runs and parity reports of one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # --- runs -------------------------------------------------------------------------------------

    def start_run(self, workspace: str, name: str, version: int, window: Interval, *, run_id: str | None) -> int:
        """Record a ``running`` run (committed at once) and return its id."""
        with self.registry.writing() as conn:
            result = conn.execute(t.materialization_runs.insert().returning(t.materialization_runs.c.id), {
                "workspace": workspace, "name": name, "version_number": version, "start": window.start,
                "end": window.end, "status": RUNNING, "rows_read": 0, "rows_written": 0, "started_at": t.utcnow(),
                "run_id": run_id,
            })
            return int(result.scalar_one())

    def finish_run(self, run: int, *, rows_read: int, rows_written: int) -> None:
        """Mark ``run`` succeeded, and supersede older ``running`` rows of the same version inside its interval."""
        m = t.materialization_runs
        with self.registry.writing() as conn:
            row = conn.execute(sa.select(m).where(m.c.id == run)).mappings().one()
            conn.execute(m.update().where(m.c.id == run).values(
                status=SUCCEEDED, rows_read=rows_read, rows_written=rows_written, finished_at=t.utcnow()))
            conn.execute(m.update().where(
                m.c.workspace == row["workspace"], m.c.name == row["name"],
                m.c.version_number == row["version_number"], m.c.status == RUNNING, m.c.id < run,
                m.c.start >= row["start"], m.c.end <= row["end"],
            ).values(status=SUPERSEDED, finished_at=t.utcnow(), error=f"superseded by run {run}"))

    def fail_run(self, run: int, *, error: str, rows_read: int, rows_written: int) -> None:
        m = t.materialization_runs
        with self.registry.writing() as conn:
            conn.execute(m.update().where(m.c.id == run).values(
                status=FAILED, rows_read=rows_read, rows_written=rows_written, finished_at=t.utcnow(),
                error=error[:_ERROR_LIMIT]))

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        """``conn`` if the caller has one open, else a read transaction of our own."""
        if conn is not None:
            yield conn
            return
        with self.registry.reading() as own:
            yield own

    def runs(self, workspace: str, name: str, version: int | None = None, *, limit: int | None = None,
             conn: Connection | None = None) -> list[dict[str, Any]]:
        """Runs, newest first."""
        query = runs_query(workspace, name, version)
        if limit is not None:
            query = query.limit(limit)
        with self._reading(conn) as c:
            return [dict(r) for r in c.execute(query).mappings()]

    def coverage(self, workspace: str, name: str, version: int, *,
                 conn: Connection | None = None) -> list[Interval]:
        """The merged intervals of the version's succeeded runs."""
        m = t.materialization_runs
        query = sa.select(m.c.start, m.c.end).where(
            m.c.workspace == workspace, m.c.name == name, m.c.version_number == version, m.c.status == SUCCEEDED)
        with self._reading(conn) as c:
            return merge(Interval(r.start, r.end) for r in c.execute(query))

    def watermark(self, workspace: str, name: str, version: int) -> datetime | None:
        """The end of the version's latest covered interval (where incremental materialization resumes)."""
        covered = self.coverage(workspace, name, version)
        return covered[-1].end if covered else None

    # --- parity reports and spines -------------------------------------------------------------------

    def save_spine(self, digest: str, row_count: int, parquet: bytes) -> None:
        """Store a spine under its digest (once: a spine that is already stored is left as it is)."""
        s = t.parity_spines
        with self.registry.writing() as conn:
            if conn.execute(sa.select(s.c.digest).where(s.c.digest == digest)).first() is None:
                conn.execute(s.insert(), {"digest": digest, "row_count": row_count, "parquet": parquet,
                                          "created_at": t.utcnow()})

    def load_spine(self, digest: str) -> bytes | None:
        with self.registry.reading() as conn:
            value = conn.execute(sa.select(t.parity_spines.c.parquet)
                                 .where(t.parity_spines.c.digest == digest)).scalar()
        return bytes(value) if value is not None else None

    def save_parity_report(self, *, workspace: str, name: str, baseline_ref: str, candidate_ref: str,
                           candidate_version: int | None, spine_digest: str, passed: bool,
                           summary: Mapping[str, Any], run_id: str | None) -> tuple[int, datetime]:
        created_at = t.utcnow()
        with self.registry.writing() as conn:
            result = conn.execute(t.parity_reports.insert().returning(t.parity_reports.c.id), {
                "workspace": workspace, "name": name, "baseline_ref": baseline_ref, "candidate_ref": candidate_ref,
                "candidate_version": candidate_version, "spine_digest": spine_digest, "passed": passed,
                "summary_json": dict(summary), "created_at": created_at, "run_id": run_id,
            })
            return int(result.scalar_one()), created_at

    def parity_reports(self, workspace: str, name: str, *, candidate_version: int | None = None,
                       limit: int | None = None, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Stored reports whose candidate is ``name`` in ``workspace``, newest first."""
        query = parity_reports_query(workspace, name, candidate_version)
        if limit is not None:
            query = query.limit(limit)
        with self._reading(conn) as c:
            return [dict(r) for r in c.execute(query).mappings()]


def runs_query(workspace: str, name: str, version: int | None = None) -> sa.Select[Any]:
    """A view's ledger rows (of one version, if given), newest first."""
    m = t.materialization_runs
    query = sa.select(m).where(m.c.workspace == workspace, m.c.name == name).order_by(m.c.id.desc())
    return query if version is None else query.where(m.c.version_number == version)


def parity_reports_query(workspace: str, name: str, candidate_version: int | None = None) -> sa.Select[Any]:
    """The stored parity reports whose candidate is ``name`` (of one version, if given), newest first."""
    p = t.parity_reports
    query = sa.select(p).where(p.c.workspace == workspace, p.c.name == name).order_by(p.c.id.desc())
    return query if candidate_version is None else query.where(p.c.candidate_version == candidate_version)
