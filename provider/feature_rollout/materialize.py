"""Materialization of one feature view version over ``[start, end)`` (DESIGN §9).

Read the source rows with ``start <= event_ts < end``, keep the latest per entity key, and upsert
them into that version's online table, newer-wins. Work streams in chunks of bounded rows and
every chunk commits, so memory stays flat and a killed run loses at most one chunk of work. The
ledger records the run (see :mod:`feature_rollout.registry.ledger`): an interval is covered only
once the whole run has been written. Because writes are newer-wins and the rows of an interval are
deterministic, re-running an interval, overlapping intervals and intervals out of order all give
the table one clean run gives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from feature_rollout.core.intervals import Interval
from feature_rollout.offline import check_columns, count_rows, latest_rows
from feature_rollout.online.base import OnlineStore, OnlineTable
from feature_rollout.registry.ledger import Ledger

log = logging.getLogger(__name__)
DEFAULT_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class Progress:
    """Reported after every committed chunk."""

    view: str
    version: int
    chunks: int
    rows_read: int
    rows_upserted: int
    rows_written: int
    seconds: float


@dataclass(frozen=True)
class MaterializationResult:
    workspace: str
    view: str
    version: int
    start: datetime
    end: datetime
    run: int
    status: str
    rows_read: int
    rows_written: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace, "view": self.view, "version": self.version,
            "start": self.start.isoformat(), "end": self.end.isoformat(), "run": self.run, "status": self.status,
            "rows_read": self.rows_read, "rows_written": self.rows_written, "seconds": round(self.seconds, 3),
        }


def materialize_version(
    *,
    ledger: Ledger,
    online: OnlineStore,
    repo_path: Path,
    workspace: str,
    view: str,
    version: int,
    spec: dict[str, Any],
    table: OnlineTable,
    window: Interval,
    run_id: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[Progress], None] | None = None,
) -> MaterializationResult:
    """Materialize ``window`` of one version. Bad input (a missing source, a column that does not
    match, an unreachable store) fails before the ledger or the store is touched."""
    check_columns(spec, repo_path)
    online.create_table(table)  # idempotent; also proves the store answers before we record a run
    began = time.monotonic()
    run = ledger.start_run(workspace, view, version, window, run_id=run_id)
    rows_read = upserted = written = chunks = 0
    try:
        rows_read = count_rows(spec, repo_path, window.start, window.end)
        for batch in latest_rows(spec, repo_path, window.start, window.end, batch_rows=batch_rows):
            written += online.write_batch(table, batch)
            upserted += batch.num_rows
            chunks += 1
            if progress is not None:
                progress(Progress(view, version, chunks, rows_read, upserted, written, time.monotonic() - began))
    except BaseException as err:  # includes KeyboardInterrupt/SystemExit: the run must not stay "running"
        ledger.fail_run(run, error=f"{type(err).__name__}: {err}", rows_read=rows_read, rows_written=written)
        raise
    ledger.finish_run(run, rows_read=rows_read, rows_written=written)
    seconds = time.monotonic() - began
    log.info("Materialized %s v%s [%s, %s): %s rows read, %s written in %.1fs", view, version, window.start,
             window.end, rows_read, written, seconds)
    return MaterializationResult(workspace, view, version, window.start, window.end, run, "succeeded", rows_read,
                                 written, seconds)
