"""Small builders for the offline tests: resolved view specs, Parquet files, timestamps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: A base time for generated data (2024-01-01T00:00:00Z) in microseconds.
BASE_US = 1_704_067_200_000_000
TS = pa.timestamp("us", tz="UTC")


def at(micros: int) -> datetime:
    """The UTC datetime ``micros`` µs after the epoch."""
    return EPOCH + timedelta(microseconds=micros)


def view_spec(
    name: str = "stats",
    *,
    features: Sequence[tuple[str, str]] = (("value", "Int64"),),
    keys: Sequence[tuple[str, str | None]] = (("driver_id", "Int64"),),
    path: str = "data/stats.parquet",
    timestamp_field: str = "event_timestamp",
    created: str = "",
    field_mapping: Mapping[str, str] | None = None,
    ttl_seconds: float | None = None,
) -> dict[str, Any]:
    """A resolved view spec as the registry stores it (``resolve_view``)."""
    return {
        "name": name,
        "features": [{"name": n, "dtype": d} for n, d in features],
        "join_keys": [{"name": n, "dtype": d, "entity": n.removesuffix("_id")} for n, d in keys],
        "ttl_seconds": ttl_seconds,
        "source_spec": {
            "name": f"{name}_source", "type": "file", "path": path, "file_format": "parquet",
            "timestamp_field": timestamp_field, "created_timestamp_column": created,
            "field_mapping": dict(field_mapping or {}),
        },
    }


def write(path: Path, columns: Mapping[str, pa.Array | Sequence[Any]], **kwargs: Any) -> pa.Table:
    """Write ``columns`` as one Parquet file (parents created) and return the table."""
    table = pa.table(dict(columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **kwargs)
    return table


def timestamps(micros: Sequence[int | None], arrow_type: pa.DataType = TS) -> pa.Array:
    """A timestamp array from µs since the epoch (converted to ``arrow_type``'s unit)."""
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[arrow_type.unit]
    factor = 1_000 if arrow_type.unit == "ns" else 1
    return pa.array([None if m is None else m * factor // scale for m in micros], pa.int64()).cast(arrow_type)
