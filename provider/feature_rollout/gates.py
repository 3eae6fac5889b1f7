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
