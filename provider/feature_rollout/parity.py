"""A/B parity of two feature view versions on one spine (DESIGN §10).

Both sides are read point-in-time on the same deterministic spine; columns present in both (or a
given mapping) are compared row by row. Numbers are equal when ``|a - b| <= max(abs_tol, rel_tol *
max(|a|, |b|))`` (as ``math.isclose``); nulls equal only nulls; everything else compares exactly.
The report passes when the share of rows with any mismatch is at most ``max_mismatch_ratio``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_rollout.core.errors import InvalidDefinitionError

MAX_EXAMPLES = 20


@dataclass(frozen=True)
class ParityReport:
    """The result of a parity check, as stored in the registry and shown in the UI.

    ``mismatches`` counts mismatching rows per compared column; ``examples`` holds the worst
    mismatches (largest numeric differences first) with their keys and both values.
    """

    baseline: str
    candidate: str
    rows_compared: int
    columns: tuple[tuple[str, str], ...]
    mismatches: dict[str, int]
    mismatched_rows: int
    examples: tuple[dict[str, Any], ...]
    abs_tol: float
    rel_tol: float
    max_mismatch_ratio: float
    spine_digest: str
    spine: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    created_at: datetime | None = None
    run_id: str | None = None

    @property
    def mismatch_ratio(self) -> float:
        return self.mismatched_rows / self.rows_compared if self.rows_compared else 0.0

    @property
    def passed(self) -> bool:
        return self.rows_compared > 0 and self.mismatch_ratio <= self.max_mismatch_ratio

    def summary(self) -> dict[str, Any]:
        """Everything but the identity columns, for ``parity_reports.summary_json``."""
        return {
            "rows_compared": self.rows_compared,
            "columns": [list(c) for c in self.columns],
            "mismatches": dict(self.mismatches),
            "mismatched_rows": self.mismatched_rows,
            "mismatch_ratio": self.mismatch_ratio,
            "examples": list(self.examples),
            "abs_tol": self.abs_tol,
            "rel_tol": self.rel_tol,
            "max_mismatch_ratio": self.max_mismatch_ratio,
            "spine": dict(self.spine),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "baseline": self.baseline, "candidate": self.candidate, "passed": self.passed,
            "spine_digest": self.spine_digest, "created_at": self.created_at.isoformat() if self.created_at else None,
            "run_id": self.run_id, **self.summary(),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ParityReport:
        s = row["summary_json"]
        return cls(
            baseline=row["baseline_ref"], candidate=row["candidate_ref"], rows_compared=s["rows_compared"],
            columns=tuple((a, b) for a, b in s["columns"]), mismatches=dict(s["mismatches"]),
            mismatched_rows=s["mismatched_rows"], examples=tuple(s["examples"]), abs_tol=s["abs_tol"],
            rel_tol=s["rel_tol"], max_mismatch_ratio=s["max_mismatch_ratio"], spine_digest=row["spine_digest"],
            spine=dict(s.get("spine", {})), id=row["id"], created_at=row["created_at"], run_id=row["run_id"],
        )

    def render(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"Parity {verdict}: {self.candidate} vs {self.baseline}",
            f"  rows compared: {self.rows_compared}; rows with a mismatch: {self.mismatched_rows} "
            f"({self.mismatch_ratio:.4%}; allowed {self.max_mismatch_ratio:.4%})",
            f"  tolerances: abs_tol={self.abs_tol} rel_tol={self.rel_tol}; spine {self.spine_digest[:12]} "
            f"({self.spine.get('kind', '?')}, {self.spine.get('rows', self.rows_compared)} rows)",
        ]
        for (base_col, cand_col) in self.columns:
            label = base_col if base_col == cand_col else f"{base_col} -> {cand_col}"
            lines.append(f"  {label}: {self.mismatches.get(cand_col, 0)} mismatches")
        if self.examples:
            lines.append("  worst mismatches:")
            for example in self.examples[:10]:
                keys = ", ".join(f"{k}={v}" for k, v in example["keys"].items())
                lines.append(f"    {example['column']} at {keys}, {example['event_timestamp']}: "
                             f"baseline={example['baseline']!r} candidate={example['candidate']!r}")
        return "\n".join(lines)


def column_pairs(baseline: Sequence[str], candidate: Sequence[str],
                 columns: Mapping[str, str] | Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """Which baseline column is compared with which candidate column."""
    if columns is None:
        pairs = tuple((c, c) for c in baseline if c in candidate)
        if not pairs:
            raise InvalidDefinitionError(
                "The two versions share no feature names, so there is nothing to compare; pass columns={baseline: "
                "candidate} to map them."
            )
        return pairs
    mapping = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    for base_col, cand_col in mapping.items():
        if base_col not in baseline:
            raise InvalidDefinitionError(f"The baseline has no feature '{base_col}'; it has {', '.join(baseline)}.")
        if cand_col not in candidate:
            raise InvalidDefinitionError(f"The candidate has no feature '{cand_col}'; it has {', '.join(candidate)}.")
    return tuple(mapping.items())


def compare(baseline: pa.Table, candidate: pa.Table, *, pairs: Sequence[tuple[str, str]], key_columns: Sequence[str],
            abs_tol: float, rel_tol: float) -> tuple[dict[str, int], int, list[dict[str, Any]]]:
    """Compare aligned tables (same rows, same order). Returns mismatches per candidate column, the
    number of rows with any mismatch, and the worst examples."""
    if baseline.num_rows != candidate.num_rows:
        raise ValueError("parity sides must have the same rows")
    any_mismatch = np.zeros(baseline.num_rows, dtype=bool)
    counts: dict[str, int] = {}
    examples: list[tuple[float, dict[str, Any]]] = []
    keys = {k: baseline.column(k).to_pylist() for k in key_columns}
    stamps = baseline.column("event_timestamp").to_pylist()
    for base_col, cand_col in pairs:
        a, b = baseline.column(base_col), candidate.column(cand_col)
        mismatch, distance = _mismatch(a, b, abs_tol, rel_tol)
        counts[cand_col] = int(mismatch.sum())
        any_mismatch |= mismatch
        a_values, b_values = a.to_pylist(), b.to_pylist()
        for index in np.flatnonzero(mismatch)[: MAX_EXAMPLES * 50]:
            i = int(index)
            examples.append((float(distance[i]), {
                "column": cand_col, "keys": {k: v[i] for k, v in keys.items()},
                "event_timestamp": stamps[i].isoformat() if stamps[i] is not None else None,
                "baseline": _jsonable(a_values[i]), "candidate": _jsonable(b_values[i]),
            }))
    examples.sort(key=lambda e: -e[0])
    return counts, int(any_mismatch.sum()), [e for _, e in examples[:MAX_EXAMPLES]]


def _mismatch(a: pa.ChunkedArray, b: pa.ChunkedArray, abs_tol: float,
              rel_tol: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Boolean mismatch per row and a distance for ranking examples (inf where only one side is null)."""
    a_null = np.asarray(a.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    b_null = np.asarray(b.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    null_mismatch = a_null != b_null
    both = ~a_null & ~b_null
    if _numeric(a.type) and _numeric(b.type):
        x = pc.cast(a, pa.float64()).fill_null(0).to_numpy(zero_copy_only=False)
        y = pc.cast(b, pa.float64()).fill_null(0).to_numpy(zero_copy_only=False)
        diff = np.abs(x - y)
        allowed = np.maximum(abs_tol, rel_tol * np.maximum(np.abs(x), np.abs(y)))
        nan_equal = np.isnan(x) & np.isnan(y)
        value_mismatch = both & (diff > allowed) & ~nan_equal
        distance = np.where(null_mismatch, np.inf, np.nan_to_num(diff, nan=np.inf))
    else:
        a_values, b_values = a.to_pylist(), b.to_pylist()
        value_mismatch = both & np.fromiter((x != y for x, y in zip(a_values, b_values, strict=True)), dtype=bool,
                                            count=len(a_values))
        distance = np.where(null_mismatch, np.inf, 1.0)
    return null_mismatch | value_mismatch, distance


def _numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value
