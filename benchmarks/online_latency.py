"""Online read latency per store: ``get_online_features`` against the store's ``read`` and a bare driver read (§16).

What it measures, for each online store (SQLite, PostgreSQL, Redis): a table of ``--entities`` materialized
drivers (default 1e5; one hourly row each, materialized with ``store.materialize``; features f1, f2
Float32, f3 Float64, f4 Int64; see ``bench_data.py``), read with random known keys, ``--keys`` per call
(default 1 and 100), ``--iterations`` timed calls per key count (default 500 for 1 key, 200 for more),
after ``--warmup`` untimed calls (default 50). Three layers, interleaved call by call (their order rotates)
so that drift on a busy machine hits all three alike; each call gets fresh random keys:

- ``api``: ``store.get_online_features(["driver_hourly:f1", ..., "driver_hourly:f4"], [{"driver_id": k}, ...])``
  (resolving the refs against the registry, building the key table, the store read, the response; the
  result is an Arrow-backed response, not converted further).
- ``store``: ``store.online_store.read(table, keys, ["f1", "f2", "f3", "f4"])`` with the keys already an Arrow
  table: the store layer alone (query, decoding to Arrow).
- ``driver``: the bare driver read of the same rows, Python tuples out: SQLite ``SELECT ... WHERE driver_id IN
  (?, ...)``; PostgreSQL ``SELECT ... WHERE driver_id = ANY(%s)``; Redis ``HMGET`` per key (pipelined for
  more than one key). This is the raw limit of the store for the read.

Printed per store and key count: p50, p99 and mean in milliseconds, and the overheads ``api - store`` and
``store - driver`` at p50. Checks (PASS/FAIL lines): every call returns one row per key, and the api, store
and driver reads agree with each other on a sample of keys. No latency goal is set (DESIGN §16 names the
measurement without a number); ``--strict`` exits 1 when a check fails, otherwise the exit status is 0.

PostgreSQL (``FEATURE_ROLLOUT_TEST_PG_URL``) gets a fresh schema and Redis (``FEATURE_ROLLOUT_TEST_REDIS_URL``)
a fresh key prefix, both removed afterwards; files live in a temporary folder that is deleted. A server that
does not answer is skipped. ``--profile DIR`` writes a cProfile of extra api calls per store and key count.

Run::

    .venv/bin/python benchmarks/online_latency.py
    .venv/bin/python benchmarks/online_latency.py --stores sqlite --keys 1,10,100 --iterations 1000 --strict
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

import numpy as np
import pyarrow as pa
from bench_data import (
    FEATURES,
    KEY,
    active_table,
    definitions,
    describe_file,
    feature_refs,
    goal_line,
    interval,
    parse_sizes,
    peak_rss_mib,
    write_source,
)
from bench_stores import isolated_store, usable_stores

from feature_rollout import FeatureStore

LAYERS = ("api", "store", "driver")


# --- bare driver reads ------------------------------------------------------------------------------


def driver_reader(store: FeatureStore, table: Any) -> tuple[Callable[[list[int]], list[Any]], Callable[[], None]]:
    """A function that reads the features of some keys with the bare driver (rows in key order), and a closer."""
    online = store.online_store
    columns = ", ".join(f'"{c}"' for c in (KEY, *FEATURES))
    if online.kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(online.path, isolation_level=None, check_same_thread=False)

        def read_sqlite(keys: list[int]) -> list[Any]:
            marks = ", ".join("?" * len(keys))
            rows = conn.execute(f'SELECT {columns} FROM "{table.name}" WHERE "{KEY}" IN ({marks})', keys).fetchall()
            return _in_key_order(keys, rows)

        return read_sqlite, conn.close
    if online.kind == "postgres":
        import psycopg

        from feature_rollout.online.postgres import libpq_url

        pg = psycopg.connect(libpq_url(online.url), autocommit=True)
        query = f'SELECT {columns} FROM "{table.name}" WHERE "{KEY}" = ANY(%s)'

        def read_postgres(keys: list[int]) -> list[Any]:
            return _in_key_order(keys, pg.execute(query, (keys,)).fetchall())

        return read_postgres, pg.close
    import redis

    client = redis.Redis.from_url(online.url)
    prefix = f"{online.key_prefix}:{table.name}:"
    fields = list(FEATURES)

    def read_redis(keys: list[int]) -> list[Any]:
        if len(keys) == 1:
            return [(keys[0], *client.hmget(f"{prefix}[{keys[0]}]", fields))]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(f"{prefix}[{key}]", fields)
        return [(key, *values) for key, values in zip(keys, pipe.execute(), strict=True)]

    return read_redis, client.close


def _in_key_order(keys: list[int], rows: list[Any]) -> list[Any]:
    by_key = {row[0]: row for row in rows}
    return [by_key.get(key, (key, None, None, None, None)) for key in keys]


# --- measuring ----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure_store(store: FeatureStore, entities: int, key_counts: list[int], args: argparse.Namespace,
                  rng: np.random.Generator) -> tuple[dict[int, dict[str, list[float]]], list[tuple[bool, str]]]:
    online = store.online_store
    table = active_table(store)
    refs = feature_refs()
    read_driver, close_driver = driver_reader(store, table)
    calls: dict[str, Callable[[list[int]], Any]] = {
        "api": lambda keys: store.get_online_features(refs, [{KEY: k} for k in keys]),
        "driver": read_driver,
    }
    timings: dict[int, dict[str, list[float]]] = {}
    checks: list[tuple[bool, str]] = []
    try:
        for count in key_counts:
            iterations = args.iterations_one if count == 1 else args.iterations
            samples: dict[str, list[float]] = {layer: [] for layer in LAYERS}
            short_rows = 0
            for number in range(args.warmup + iterations):
                keys = [int(k) for k in rng.integers(1, entities + 1, count)]
                # the store layer gets its keys as Arrow, built outside the timer
                arrow_keys = pa.table({KEY: pa.array(keys, pa.int64())})
                order = LAYERS[number % 3:] + LAYERS[:number % 3]
                for layer in order:
                    started = time.perf_counter()
                    result = online.read(table, arrow_keys, list(FEATURES)) if layer == "store" else calls[layer](keys)
                    elapsed = time.perf_counter() - started
                    rows = result.to_arrow().num_rows if layer == "api" else (
                        result.num_rows if layer == "store" else len(result))
                    short_rows += rows != count
                    if number >= args.warmup:
                        samples[layer].append(elapsed)
            timings[count] = samples
            checks.append((short_rows == 0, f"[{online.kind}, {count} keys] every call returned one row per key "
                                            f"({short_rows} did not)"))
            if args.profile:
                import cProfile

                Path(args.profile).mkdir(parents=True, exist_ok=True)
                path = Path(args.profile) / f"online_{online.kind}_{count}keys.prof"
                keys = [int(k) for k in rng.integers(1, entities + 1, count)]
                profiler = cProfile.Profile()
                profiler.runcall(lambda keys=keys: [calls["api"](keys) for _ in range(100)])
                profiler.dump_stats(path)
                print(f"  profile of 100 api calls: {path}", flush=True)
        keys = [int(k) for k in rng.integers(1, entities + 1, 100)]
        api = calls["api"](keys).to_dict()
        stored = online.read(table, pa.table({KEY: pa.array(keys, pa.int64())}), list(FEATURES)).to_pydict()
        bare = read_driver(keys)
        agree = all(api[f] == stored[f] for f in FEATURES) and all(
            _close(bare_row[1 + i], api[f][n]) for n, bare_row in enumerate(bare) for i, f in enumerate(FEATURES))
        nulls = sum(v is None for v in api["f1"])
        checks.append((agree and nulls == 0, f"[{online.kind}] api, store and driver reads agree on 100 keys "
                                             f"({nulls} null values)"))
    finally:
        close_driver()
    return timings, checks


def _close(bare: Any, value: Any) -> bool:
    """Redis returns text; Float32 values come back widened; compare as numbers."""
    if bare is None or value is None:
        return bare is value
    return abs(float(bare) - float(value)) <= 1e-6 * max(1.0, abs(float(value)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres,redis", help="online stores (default all three)")
    parser.add_argument("--entities", type=float, default=1e5, help="materialized drivers (default 1e5)")
    parser.add_argument("--keys", default="1,100", help="keys per call (default 1,100)")
    parser.add_argument("--iterations-one", type=int, default=500, help="timed calls with 1 key (default 500)")
    parser.add_argument("--iterations", type=int, default=200, help="timed calls with more keys (default 200)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls first (default 50)")
    parser.add_argument("--seed", type=int, default=11, help="seed of the keys (default 11)")
    parser.add_argument("--tmp-dir", help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--profile", help="write a cProfile of 100 api calls per store and key count here")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a check fails")
    args = parser.parse_args(argv)
    args.entities = int(args.entities)
    args.keys = parse_sizes(args.keys, "--keys")
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if min(args.iterations_one, args.iterations) < 1 or args.warmup < 0:
        parser.error("--iterations must be positive and --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores = usable_stores(args.stores)
    print(f"online_latency: stores={stores} entities={args.entities:,} keys={args.keys} "
          f"iterations={args.iterations_one} (1 key) / {args.iterations} warmup={args.warmup} "
          f"({date.today().isoformat()}, {os.cpu_count()} cores)", flush=True)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[int, dict[str, list[float]]]] = {}
    checks: list[tuple[bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="online_latency_", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        source, _ = write_source(tmp / "data", args.entities, 1)
        print(f"  source {describe_file(source)}", flush=True)
        for kind in stores:
            work = tmp / kind
            work.mkdir()
            with isolated_store(kind, work) as online_store:
                store = FeatureStore(work, config={"project": "bench", "registry": f"sqlite:///{work}/registry.db",
                                                   "online_store": online_store})
                store.apply(definitions(source))
                (materialized,) = store.materialize(*interval(1))
                table_rows = store.online_store.count(active_table(store))
                print(f"  {kind}: materialized {materialized.rows_written:,} rows ({table_rows:,} in the table) in "
                      f"{materialized.seconds:.1f} s", flush=True)
                checks.append((table_rows == args.entities, f"[{kind}] the table holds {table_rows:,} drivers"))
                results[kind], store_checks = measure_store(store, args.entities, args.keys, args, rng)
                checks += store_checks
                store.online_store.close()
    print()
    header = (f"{'store':<9} {'keys':>4} {'layer':<6} | {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>7} | {'n':>4} | "
              "overhead at p50")
    print(header)
    print("-" * len(header))
    for kind, by_count in results.items():
        for count, samples in by_count.items():
            p50 = {layer: percentile(samples[layer], 50) * 1e3 for layer in LAYERS}
            for layer in LAYERS:
                values = samples[layer]
                note = ""
                if layer == "api":
                    note = f"api - store {p50['api'] - p50['store']:+.3f} ms"
                elif layer == "store":
                    note = f"store - driver {p50['store'] - p50['driver']:+.3f} ms"
                print(f"{kind:<9} {count:>4} {layer:<6} | {p50[layer]:>7.3f} {percentile(values, 99) * 1e3:>7.3f} "
                      f"{statistics.fmean(values) * 1e3:>7.3f} | {len(values):>4} | {note}")
        print()
    print("api: store.get_online_features(refs, entity_rows); store: online_store.read(table, keys, features) with")
    print("Arrow keys; driver: the bare driver query/commands, Python tuples out (the store's raw read limit).")
    print()
    for ok, line in checks:
        print(goal_line(ok, line))
    print()
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB; total time: {time.perf_counter() - started:.0f} s")
    return 1 if args.strict and not all(ok for ok, _ in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
