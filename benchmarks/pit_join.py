"""Point-in-time join time: ``get_historical_features`` against a bare DuckDB ASOF JOIN of the same data (DESIGN §16).

What it measures: a feature view over ``--feature-rows`` source rows (default 1e7: 1e5 drivers x 100 hourly
rows; features f1, f2 Float32, f3 Float64, f4 Int64; a ``created`` column; no ttl; see ``bench_data.py``)
and spines of ``--spines`` rows (default 1e5 and 1e6): random drivers (all known) at random times from the
first hour of the data to one hour after its end, in random order, as a pandas DataFrame with a UTC
``event_timestamp``. For each spine, in the same process:

- ``ours``: ``store.get_historical_features(spine_df, ["driver_hourly:f1", ..., "driver_hourly:f4"]).to_arrow()``
  (wall time: spine checks, reading the Parquet through pyarrow into DuckDB, the two-step ASOF join that
  applies the tie rule, results in spine order).
- ``bare``: one DuckDB query on a default connection (``duckdb.connect()``, UTC) over the same file, read
  natively by DuckDB, into an Arrow table; the spine is registered as an Arrow table (converting it from
  pandas is not timed)::

      SELECT s.driver_id, s.event_timestamp, f.f1, f.f2, f.f3, f.f4 FROM spine s
      ASOF LEFT JOIN read_parquet('<file>') f ON s.driver_id = f.driver_id AND s.event_timestamp >= f.event_timestamp

  It returns rows in no particular order. ``bare+order`` is the same query with ``ORDER BY`` the spine's row
  number, which is what ours guarantees (information).

Each is timed ``--repeat`` times (default 3) after one warm-up call of each on a 1,000-row spine (imports,
page cache); the best and the median are printed with the ratio ``bare s / ours s`` (best against best).
Checks, printed as PASS/FAIL lines: both return one row per spine row, and ours equals bare (sorted by spine
row) value for value. No time goal is set (DESIGN §16 names this measurement without a number). The exit
status is 0 unless ``--strict`` is given and a check fails. Ours runs first (all spines), then bare, so the
peak RSS (VmHWM) read between the two is ours alone; the peak of the whole process is printed too.

Files live in a temporary folder that is deleted (``--data-dir`` keeps the generated Parquet for reuse).

Run::

    .venv/bin/python benchmarks/pit_join.py
    .venv/bin/python benchmarks/pit_join.py --feature-rows 1e6 --spines 1e4,1e5 --repeat 5 --strict
    .venv/bin/python benchmarks/pit_join.py --profile /tmp/pit.prof   # cProfile of ours on the largest spine
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from bench_data import (
    BASE_US,
    FEATURES,
    HOUR_US,
    KEY,
    definitions,
    describe_file,
    feature_refs,
    goal_line,
    parse_sizes,
    peak_rss_mib,
    size_label,
    write_source,
)

from feature_rollout import FeatureStore

BARE_SQL = (
    "SELECT s.driver_id, s.event_timestamp, {features} FROM spine s ASOF LEFT JOIN read_parquet(?) f "
    "ON s.driver_id = f.driver_id AND s.event_timestamp >= f.event_timestamp"
)


def make_spine(rows: int, entities: int, hours: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    micros = BASE_US + rng.integers(0, (hours + 1) * HOUR_US, rows)
    return pd.DataFrame({
        KEY: rng.integers(1, entities + 1, rows),
        "event_timestamp": pd.to_datetime(micros, unit="us", utc=True),
    })


def timed(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return times, result


def same_values(ours: pa.Table, bare: pa.Table) -> tuple[bool, str]:
    """Whether ours (in spine order) equals bare (sorted by spine row) feature by feature, nulls included."""
    differing = {}
    for name in FEATURES:
        left, right = ours.column(name).combine_chunks(), bare.column(name).combine_chunks()
        if not left.equals(right):
            same = pc.fill_null(pc.equal(left, right), False)
            both_null = pc.and_(left.is_null(), right.is_null())
            differing[name] = len(left) - pc.sum(pc.or_(same, both_null)).as_py()
    nulls = ours.column("f1").null_count
    if differing:
        return False, f"values differ: {differing} (rows with no feature row in time: {nulls:,})"
    return True, f"all {ours.num_rows:,} rows equal ({nulls:,} of them null: no feature row at or before the time)"


def run_ours(store: FeatureStore, spine: pd.DataFrame, repeat: int) -> tuple[list[float], pa.Table]:
    refs = feature_refs()
    return timed(lambda: store.get_historical_features(spine, refs).to_arrow(), repeat)


def run_bare(source: Path, spine: pd.DataFrame, repeat: int) -> dict[str, Any]:
    arrow_spine = pa.Table.from_pandas(spine, preserve_index=False)
    arrow_spine = arrow_spine.append_column("_row", pa.array(np.arange(len(spine), dtype=np.int64)))
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.register("spine", arrow_spine)
    features = ", ".join(f"f.{name}" for name in FEATURES)
    bare_sql = BARE_SQL.format(features=features)
    ordered_sql = BARE_SQL.format(features=f"{features}, s._row") + " ORDER BY s._row"
    bare_times, bare = timed(lambda: connection.sql(bare_sql, params=[str(source)]).to_arrow_table(), repeat)
    ordered_times, ordered = timed(lambda: connection.sql(ordered_sql, params=[str(source)]).to_arrow_table(),
                                   repeat)
    connection.close()
    return {"bare": bare_times, "ordered": ordered_times, "bare_rows": bare.num_rows, "ordered_table": ordered}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--feature-rows", default="1e7", help="source rows (default 1e7)")
    parser.add_argument("--entities", type=float, default=1e5, help="drivers (default 1e5)")
    parser.add_argument("--spines", default="1e5,1e6", help="spine sizes (default 1e5,1e6)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls of each (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the spines (default 7)")
    parser.add_argument("--data-dir", help="keep the generated Parquet here and reuse it (default: temporary)")
    parser.add_argument("--tmp-dir", help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--profile", help="write a cProfile of ours on the largest spine to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a check fails")
    args = parser.parse_args(argv)
    (args.feature_rows,) = parse_sizes(args.feature_rows, "--feature-rows")
    args.spines = parse_sizes(args.spines, "--spines")
    args.entities = int(args.entities)
    if args.feature_rows % args.entities:
        parser.error(f"--feature-rows {args.feature_rows} is not a multiple of --entities {args.entities}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hours = args.feature_rows // args.entities
    print(f"pit_join: feature rows={args.feature_rows:,} ({args.entities:,} drivers x {hours} hours) "
          f"spines={args.spines} repeat={args.repeat} ({date.today().isoformat()}, {os.cpu_count()} cores)",
          flush=True)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="pit_join_", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        source, seconds = write_source(Path(args.data_dir) if args.data_dir else tmp / "data", args.entities, hours)
        print(f"  source {describe_file(source)}" + (f" (written in {seconds:.1f} s)" if seconds else " (reused)"),
              flush=True)
        store = FeatureStore(tmp / "repo", config={
            "project": "bench", "registry": f"sqlite:///{tmp}/registry.db",
            "online_store": {"type": "sqlite", "path": str(tmp / "online.db")}})
        store.apply(definitions(source))
        warm = make_spine(1_000, args.entities, hours, args.seed)
        spines = [make_spine(size, args.entities, hours, args.seed + 1 + n) for n, size in enumerate(args.spines)]
        # Ours first, all spines, so that the peak RSS read after them is ours alone.
        run_ours(store, warm, 1)
        for size, spine in zip(args.spines, spines, strict=True):
            times, table = run_ours(store, spine, args.repeat)
            results.append({"rows": size, "ours": times, "ours_rows": table.num_rows, "ours_table": table})
            print(f"  done ours, spine {size:,}: {min(times):.2f} s", flush=True)
        ours_peak = peak_rss_mib()
        if args.profile:
            import cProfile

            refs = feature_refs()
            largest = spines[args.spines.index(max(args.spines))]
            cProfile.runctx("store.get_historical_features(largest, refs).to_arrow()", globals(),
                            {"store": store, "largest": largest, "refs": refs}, args.profile)
        run_bare(source, warm, 1)
        for result, spine in zip(results, spines, strict=True):
            result.update(run_bare(source, spine, args.repeat))
            result["equal"], result["detail"] = same_values(result.pop("ours_table"), result.pop("ordered_table"))
            print(f"  done bare, spine {result['rows']:,}: {min(result['bare']):.2f} s", flush=True)
        store.online_store.close()
    print()
    header = (f"{'spine':>9} {'features':>10} | {'ours s':>7} {'median':>7} | {'bare s':>7} {'median':>7} | "
              f"{'bare+order':>10} | {'ratio':>6} | {'ours rows':>9} {'bare rows':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        ours, bare, ordered = min(r["ours"]), min(r["bare"]), min(r["ordered"])
        print(f"{r['rows']:>9,} {args.feature_rows:>10,} | {ours:>7.3f} {statistics.median(r['ours']):>7.3f} | "
              f"{bare:>7.3f} {statistics.median(r['bare']):>7.3f} | {ordered:>10.3f} | {bare / ours:>6.3f} | "
              f"{r['ours_rows']:>9,} {r['bare_rows']:>9,}")
    print()
    print("ours s / bare s: best of --repeat (median beside); bare+order: bare with ORDER BY spine row (best);")
    print("ratio = bare s / ours s (best against best).")
    print()
    checks = []
    for r in results:
        label = size_label(r["rows"])
        checks.append((r["ours_rows"] == r["bare_rows"] == r["rows"],
                       f"[spine {label}] one row per spine row: ours {r['ours_rows']:,}, bare {r['bare_rows']:,}"))
        checks.append((r["equal"], f"[spine {label}] ours equals bare: {r['detail']}"))
    for ok, line in checks:
        print(goal_line(ok, line))
    print()
    if args.profile:
        print(f"cProfile of ours on the largest spine: {args.profile}")
    print(f"peak RSS after ours (all spines, before any bare query): {ours_peak:,.0f} MiB; whole process: "
          f"{peak_rss_mib():,.0f} MiB (bare DuckDB runs with its default memory limit, 80% of RAM)")
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return 1 if args.strict and not all(ok for ok, _ in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
