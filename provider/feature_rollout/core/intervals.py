"""Half-open time intervals ``[start, end)``: ledger coverage, gaps, and backfill chunks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from feature_rollout.core.errors import InvalidDefinitionError, NaiveTimestampError


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def require_aware(value: datetime, what: str) -> datetime:
    """``value`` if it has a time zone, else :class:`NaiveTimestampError` (we never guess a zone)."""
    if not isinstance(value, datetime):
        raise InvalidDefinitionError(f"{what} must be a datetime, got {value!r}.")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveTimestampError(
            f"{what} {value.isoformat()} has no time zone. Pass an aware datetime, e.g. "
            "datetime(2026, 1, 1, tzinfo=timezone.utc) or pendulum.datetime(2026, 1, 1)."
        )
    return value


def interval(start: datetime, end: datetime) -> Interval:
    """A validated ``[start, end)``: both aware, ``start < end``."""
    require_aware(start, "start")
    require_aware(end, "end")
    if not start < end:
        raise InvalidDefinitionError(f"The interval start {start.isoformat()} must be before its end "
                                     f"{end.isoformat()}.")
    return Interval(start, end)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Union of intervals as sorted, disjoint, non-touching intervals."""
    merged: list[Interval] = []
    for item in sorted(intervals):
        if merged and item.start <= merged[-1].end:
            if item.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, item.end)
        else:
            merged.append(item)
    return merged


def gaps(covered: Iterable[Interval], wanted: Interval) -> list[Interval]:
    """The parts of ``wanted`` that ``covered`` does not cover."""
    missing = []
    cursor = wanted.start
    for item in merge(covered):
        if item.end <= cursor:
            continue
        if item.start >= wanted.end:
            break
        if item.start > cursor:
            missing.append(Interval(cursor, item.start))
        cursor = max(cursor, item.end)
        if cursor >= wanted.end:
            break
    if cursor < wanted.end:
        missing.append(Interval(cursor, wanted.end))
    return missing


def chunks(whole: Interval, size: timedelta) -> list[Interval]:
    """``whole`` cut into consecutive pieces of ``size`` (the last may be shorter), for mapped backfills."""
    if size <= timedelta(0):
        raise InvalidDefinitionError(f"The chunk size must be positive, got {size}.")
    pieces = []
    cursor = whole.start
    while cursor < whole.end:
        pieces.append(Interval(cursor, min(cursor + size, whole.end)))
        cursor += size
    return pieces
