"""Gates that hold a promotion (DESIGN §10, §11): readiness of a version, and its latest parity report.

Readiness of (view, version, ``[start, end)``): the ledger's succeeded runs cover ``[start, end)``
and the online table holds a row for every entity that has source rows within the view's ttl before
``end`` (or within ``[start, end)`` when the view has no ttl), reported as expected vs found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from feature_rollout.core.errors import GateCheckFailed
from feature_rollout.core.intervals import Interval, gaps
from feature_rollout.core.refs import ViewRef, parse_view_ref


@dataclass(frozen=True)
class Readiness:
    """Whether a version's online table is populated for ``[start, end)``, and why not."""

    view: str
    version: int
    start: datetime
    end: datetime
    covered: tuple[Interval, ...]
    missing_intervals: tuple[Interval, ...]
    expected_entities: int
    found_entities: int
    entity_window: Interval | None = None
    reasons: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return not self.missing_intervals and self.found_entities >= self.expected_entities

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "version": self.version, "ready": self.ready,
            "start": self.start.isoformat(), "end": self.end.isoformat(),
            "covered": [i.to_dict() for i in self.covered],
            "missing_intervals": [i.to_dict() for i in self.missing_intervals],
            "expected_entities": self.expected_entities, "found_entities": self.found_entities,
            "reasons": list(self.reasons),
        }

    def explain(self) -> str:
        if self.ready:
            return (f"{self.view} v{self.version} is ready for [{self.start.isoformat()}, {self.end.isoformat()}): "
                    f"{self.found_entities}/{self.expected_entities} entities online.")
        return f"{self.view} v{self.version} is not ready: " + "; ".join(self.reasons)


def entity_window(start: datetime, end: datetime, ttl_seconds: float | None) -> Interval:
    """Where expected entities are counted: the view's ttl before ``end``, or ``[start, end)`` for a
    view without ttl."""
    if ttl_seconds:
        return Interval(end - timedelta(seconds=ttl_seconds), end)
    return Interval(start, end)


def readiness_result(view: str, version: int, window: Interval, covered: Sequence[Interval], expected: int,
                     found: int, counted_in: Interval) -> Readiness:
    missing = gaps(covered, window)
    reasons = []
    if missing:
        listed = ", ".join(f"[{m.start.isoformat()}, {m.end.isoformat()})" for m in missing[:5])
        reasons.append(f"the ledger has no succeeded materialization for {listed}"
                       + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if found < expected:
        reasons.append(f"the online table has {found} of the {expected} entities with source rows in "
                       f"[{counted_in.start.isoformat()}, {counted_in.end.isoformat()})")
    return Readiness(view, version, window.start, window.end, tuple(covered), tuple(missing), expected, found,
                     counted_in, tuple(reasons))


def require_ready(readiness: Readiness) -> None:
    if not readiness.ready:
        raise GateCheckFailed(f"Promotion gate: {readiness.explain()}. Materialize the missing intervals (and check "
                              "the source), then promote again.")


def require_coverage(view: str, version: int, covered: Sequence[Interval], window: Interval) -> None:
    """The in-transaction half of readiness: the ledger still covers ``window``."""
    missing = gaps(covered, window)
    if missing:
        raise GateCheckFailed(f"Promotion gate: {view} v{version} lost ledger coverage of "
                              f"[{missing[0].start.isoformat()}, {missing[0].end.isoformat()}) while promoting; "
                              "materialize it again.")


def require_parity(workspace: str, view: str, version: int, active: int | None,
                   reports: Sequence[Mapping[str, Any]]) -> None:
    """The latest parity report of the candidate must compare it with the active version, and pass."""
    if active is None:
        return  # nothing is served yet: there is no baseline to be on par with
    if not reports:
        raise GateCheckFailed(
            f"Promotion gate: there is no parity report for {view} v{version}. Run `feature-rollout parity "
            f"{view}@v{active} {view}@v{version}` (or the ParityCheckOperator) first."
        )
    latest = reports[0]
    baseline: ViewRef = parse_view_ref(latest["baseline_ref"])
    if (baseline.workspace or workspace, baseline.view, baseline.version) != (workspace, view, active):
        raise GateCheckFailed(
            f"Promotion gate: the latest parity report of {view} v{version} (#{latest['id']}) compares it with "
            f"{latest['baseline_ref']}, but the active version is {workspace}/{view}@v{active}. Run parity against the "
            "active version."
        )
    if not latest["passed"]:
        summary = latest["summary_json"]
        raise GateCheckFailed(
            f"Promotion gate: the latest parity report of {view} v{version} (#{latest['id']}) FAILED: "
            f"{summary['mismatched_rows']} of {summary['rows_compared']} rows differ "
            f"(allowed ratio {summary['max_mismatch_ratio']}). Fix the candidate and run parity again."
        )


# --- gate status, for sensors and triggers --------------------------------------------------------

PASSED, WAITING, FAILED = "passed", "waiting", "failed"


@dataclass(frozen=True)
class GateStatus:
    """One evaluation of a gate: ``passed``, ``waiting`` (check again later) or ``failed`` (stop now)."""

    status: str
    message: str
    view: str
    version: int
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        """The small payload a trigger yields."""
        return {"status": self.status, "message": self.message, "view": self.view, "version": self.version,
                **{k: v for k, v in self.details.items() if isinstance(v, int | float | str | bool) or v is None}}


def populated_status(store: Any, view: str, version: int, start: datetime, end: datetime) -> GateStatus:
    """Is ``version`` populated for ``[start, end)``? Never ``failed``: data may still arrive."""
    result: Readiness = store.readiness(view, version, start, end)
    details = {"expected_entities": result.expected_entities, "found_entities": result.found_entities,
               "missing_intervals": len(result.missing_intervals)}
    return GateStatus(PASSED if result.ready else WAITING, result.explain(), view, version, details)


def promotion_gate_status(store: Any, view: str, version: int, start: datetime, end: datetime) -> GateStatus:
    """Populated for ``[start, end)`` and the latest parity report against the active version passed.

    A failed report is ``failed`` (a sensor stops without retrying); a missing one is ``waiting``.
    """
    populated = populated_status(store, view, version, start, end)
    if populated.status != PASSED:
        return populated
    record = store.registry.get_view(store.workspace, view)
    try:
        reports = store.ledger.parity_reports(store.workspace, view, candidate_version=version, limit=1)
        require_parity(store.workspace, view, version, record.active_version, reports)
    except GateCheckFailed as err:
        failed = bool(reports) and not reports[0]["passed"]
        details = {**populated.details, "report_id": reports[0]["id"] if reports else None}
        return GateStatus(FAILED if failed else WAITING, str(err), view, version, details)
    report_id = reports[0]["id"] if reports else None
    return GateStatus(PASSED, f"{view} v{version} is populated and on par with the active version"
                      + (f" (parity report #{report_id})." if report_id else " (nothing is active yet)."),
                      view, version, {**populated.details, "report_id": report_id})
