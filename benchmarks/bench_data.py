"""Synthetic feature data and the feature repo the data-plane benchmarks share (DESIGN §16).

Not a benchmark itself: ``materialize_throughput.py``, ``pit_join.py`` and ``online_latency.py``
import it (they are run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path``).

The data: ``entities`` drivers (``driver_id`` 1..entities) with one row per driver per hour for
``hours`` hours from ``BASE`` (2026-01-01 UTC), i.e. ``entities * hours`` rows. Each row's
``event_timestamp`` is its hour plus a random second of that hour (so timestamps are unique per
driver), ``created`` is 0-600 s later, and the features are ``f1``, ``f2`` (Float32), ``f3``
(Float64) and ``f4`` (Int64). Rows are in time order (as an append-only event log is), drivers in
a shuffled order within each hour, written in row groups of ``row_group_rows``; the same arguments
and seed always give the same file.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_rollout import Entity, FeatureView, Field, FileSource
from feature_rollout.types import Float32, Float64, Int64

BASE = datetime(2026, 1, 1, tzinfo=UTC)
VIEW = "driver_hourly"
KEY = "driver_id"
FEATURES = ("f1", "f2", "f3", "f4")
FEATURE_TYPES = {"f1": Float32, "f2": Float32, "f3": Float64, "f4": Int64}
ARROW_SCHEMA = pa.schema([
    pa.field(KEY, pa.int64()), pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("created", pa.timestamp("us", tz="UTC")), pa.field("f1", pa.float32()), pa.field("f2", pa.float32()),
    pa.field("f3", pa.float64()), pa.field("f4", pa.int64()),
])
DEFAULT_ROW_GROUP_ROWS = 250_000
BASE_US = int(BASE.timestamp()) * 1_000_000
HOUR_US = 3_600_000_000
# Drivers within an hour come in the order (position * _STRIDE + hour * _SHIFT) mod entities: a cheap
# permutation (the stride is a prime that divides no power of ten) that differs from hour to hour.
_STRIDE, _SHIFT = 7_919, 104_729


def source_path(data_dir: Path, entities: int, hours: int, seed: int) -> Path:
    return data_dir / f"features_e{entities}_h{hours}_s{seed}.parquet"


def write_source(data_dir: Path, entities: int, hours: int, *, seed: int = 42,
                 row_group_rows: int = DEFAULT_ROW_GROUP_ROWS) -> tuple[Path, float]:
    """The Parquet file of ``entities * hours`` rows (written unless it exists already) and the seconds spent.

    Written chunk by chunk (one row group per chunk), so memory stays at one row group whatever the size.
    """
    path = source_path(data_dir, entities, hours, seed)
    if path.exists():
        return path, 0.0
    if entities % _STRIDE == 0:
        raise ValueError(f"entities must not be a multiple of {_STRIDE}")
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.partial")
    rng = np.random.default_rng(seed)
    total = entities * hours
    with pq.ParquetWriter(partial, ARROW_SCHEMA, compression="snappy") as writer:
        for start in range(0, total, row_group_rows):
            row = np.arange(start, min(start + row_group_rows, total), dtype=np.int64)
            hour, position = row // entities, row % entities
            driver = (position * _STRIDE + hour * _SHIFT) % entities + 1
            event = BASE_US + hour * HOUR_US + rng.integers(0, 3_600, len(row)) * 1_000_000
            created = event + rng.integers(0, 600_000_000, len(row))
            chunk = pa.table([
                pa.array(driver), pa.array(event).cast(ARROW_SCHEMA.field("event_timestamp").type),
                pa.array(created).cast(ARROW_SCHEMA.field("created").type),
                pa.array(rng.random(len(row), dtype=np.float32)), pa.array(rng.random(len(row), dtype=np.float32)),
                pa.array(rng.standard_normal(len(row))), pa.array(rng.integers(0, 1_000, len(row))),
            ], schema=ARROW_SCHEMA)
            writer.write_table(chunk, row_group_size=row_group_rows)
    partial.rename(path)
    return path, time.perf_counter() - started


def describe_file(path: Path) -> str:
    meta = pq.ParquetFile(path).metadata
    size = path.stat().st_size / 2**20
    return f"{path.name}: {meta.num_rows:,} rows, {meta.num_row_groups} row groups, {size:.0f} MiB"


def interval(hours: int) -> tuple[datetime, datetime]:
    """``[start, end)`` that holds every row of a file of ``hours`` hours."""
    return BASE, BASE + timedelta(hours=hours)


def definitions(path: Path, *, ttl: timedelta | None = None) -> list[Any]:
    """The entity, the source and the view over ``path`` (an absolute path, so any repo folder works)."""
    driver = Entity(name="driver", join_keys=[KEY])
    source = FileSource(name="driver_hourly_source", path=str(path.resolve()), timestamp_field="event_timestamp",
                        created_timestamp_column="created")
    schema = [Field(name=KEY, dtype=Int64)] + [Field(name=f, dtype=FEATURE_TYPES[f]) for f in FEATURES]
    view = FeatureView(name=VIEW, entities=[driver], source=source, schema=schema, ttl=ttl)
    return [driver, source, view]


def feature_refs() -> list[str]:
    return [f"{VIEW}:{f}" for f in FEATURES]


# --- reporting ------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set so far (VmHWM), in MiB."""
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"] / 1024
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 / 1024 if sys.platform == "darwin" else kib / 1024


def current_rss_mib() -> float:
    return _proc_status().get("VmRSS", 0) / 1024


def _proc_status() -> dict[str, int]:
    try:
        text = Path(f"/proc/{os.getpid()}/status").read_text()
    except OSError:
        return {}
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(Vm\w+):\s+(\d+) kB", text, re.MULTILINE)}


def goal_line(ok: bool | None, text: str) -> str:
    status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
    return f"{status}: {text}"


def size_label(size: int) -> str:
    """``1000000`` -> ``"1e6"``; other numbers with thousands separators."""
    exponent = len(str(size)) - 1
    return f"1e{exponent}" if size == 10**exponent else f"{size:,}"


def parse_sizes(text: str, what: str) -> list[int]:
    """``"1e6,1e7"`` or ``"1000000"`` -> integers."""
    try:
        sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"{what} must be comma-separated numbers such as 1e6,1e7, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"{what} must be positive numbers, not {text!r}")
    return sizes


def active_table(store: Any) -> Any:
    """The :class:`~feature_rollout.online.OnlineTable` of the active version of the benchmark view."""
    record = store.registry.load_state(store.workspace).live_views()[VIEW]
    return store.online_table(record.active)
