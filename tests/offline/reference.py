"""Brute-force reference semantics of the offline store, in plain Python loops over plain rows.

Rows are dicts: join keys and features by name, ``"ts"`` and ``"created"`` as µs since the epoch
(or ``None``). The rules are those of ``feature_rollout.offline.retrieval``'s docstring, written as
directly as possible so that the DuckDB queries can be checked against them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]


def _value_rank(value: Any) -> Any:
    # Lists compare element by element, a null element above any value; a shorter prefix is smaller.
    if isinstance(value, list):
        return tuple((1,) if element is None else (0, element) for element in value)
    return value


def rank(row: Row, features: Sequence[str], *, has_created: bool) -> tuple[Any, ...]:
    """The tie rule as a sort key: event time, created time (missing = 0), then per feature a value
    above a null, then the greater value."""
    created = (row["created"] or 0) if has_created else 0
    return (row["ts"], created, *((row[f] is not None, _value_rank(row[f])) for f in features))


@dataclass
class Read:
    """One read of the reference: a source's rows and what to take from them."""

    rows: Sequence[Row]
    keys: Sequence[str]
    features: Sequence[str]  # every declared feature, in declared order (they all break ties)
    selected: Sequence[tuple[str, str]]  # (feature, output column)
    ttl_us: int | None
    has_created: bool


def point_in_time(spine: Sequence[Row], reads: Sequence[Read]) -> list[dict[str, Any]]:
    """Per spine row (keys and ``"ts"``), every read's output columns."""
    result = []
    for entity in spine:
        out: dict[str, Any] = {}
        for read in reads:
            t = entity["ts"]
            best = None
            for row in read.rows:
                if t is None or row["ts"] is None:
                    continue
                if any(entity[k] is None or row[k] is None or entity[k] != row[k] for k in read.keys):
                    continue
                if row["ts"] > t or (read.ttl_us and row["ts"] < t - read.ttl_us):
                    continue
                if best is None or rank(row, read.features, has_created=read.has_created) > rank(
                        best, read.features, has_created=read.has_created):
                    best = row
            for feature, output in read.selected:
                out[output] = None if best is None else best[feature]
        result.append(out)
    return result


def latest(rows: Sequence[Row], keys: Sequence[str], features: Sequence[str], *, has_created: bool,
           start_us: int, end_us: int) -> list[dict[str, Any]]:
    """The latest row per key with ``start <= ts < end``, as online-table rows sorted by the keys."""
    best: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        if None in key or row["ts"] is None or not start_us <= row["ts"] < end_us:
            continue
        if key not in best or rank(row, features, has_created=has_created) > rank(
                best[key], features, has_created=has_created):
            best[key] = row
    return [
        {**{k: best[key][k] for k in keys}, **{f: best[key][f] for f in features},
         "_event_ts": best[key]["ts"], "_created_ts": (best[key]["created"] or 0) if has_created else 0}
        for key in sorted(best)
    ]
