"""Materialization throughput per online store, against the raw bulk-insert limit of the same store (DESIGN §16).

What it measures, for each online store (SQLite, PostgreSQL, Redis) and each source size (default 1e6 and
1e7 rows: 1e5 drivers x 10 resp. 100 hourly rows; features f1, f2 Float32, f3 Float64, f4 Int64; a
``created`` column; see ``bench_data.py``). Every measurement runs in a fresh Python process, ``--repeat``
times (default 3); the process with the fastest ``ours`` is reported.

1. ``ours``: ``store.materialize(start, end)`` of the whole interval into the empty online table of v0 (a
   fresh registry and a fresh store; the table is created by ``store.apply``). Timed: the wall time of the
   call (registry reads, ledger writes, reading and deduplicating every source row in DuckDB, writing the
   latest row per driver: 1e5 rows). Imports of DuckDB and the store modules are done before the timer.
2. ``write``: the part of (1) spent inside ``online_store.write_batch`` (the method is wrapped with a timer):
   Arrow-to-store conversion plus the newer-wins upsert, chunk by chunk (100,000 rows per chunk).
3. ``raw``: in the same process, right after (1), a bare bulk insert of the SAME 1e5 deduplicated rows
   (read back with ``online_store.dump``) into an EMPTY table of the same shape with the store's bare bulk
   path, best of ``--raw-repeat`` runs (default 3), each into a new empty table:

   - SQLite: one ``executemany`` of a plain ``INSERT`` in one transaction, in the same file, on a connection
     with the store's settings (WAL, ``synchronous=NORMAL``); the table is created from the same DDL.
   - PostgreSQL: ``COPY ... FROM STDIN (FORMAT BINARY)`` with psycopg 3 (``write_row`` of Python tuples) in
     one transaction, into a table ``LIKE`` ours ``INCLUDING ALL`` (same types, same primary key).
   - Redis: redis-py pipelined ``HSET`` of one hash per driver (same key layout and fields as ours),
     ``--redis-pipeline`` commands per round trip (default 5,000, as ours).

   Not timed: building the Python rows (tuples, argument lists) from the Arrow table; that time is printed
   apart as ``prep s``. Timed: the driver's encoding of those rows, the transfer, the server's work and the
   commit.
4. ``floor`` (PostgreSQL and Redis, information only): the same rows as bytes encoded beforehand (the COPY
   binary stream built with NumPy; the HSET commands packed to RESP and written to a plain socket, replies
   counted), so that only the transfer and the server's work are timed.
5. ``dedup`` (information only): a bare DuckDB query (``arg_max`` per driver over ``read_parquet``, default
   settings, into Arrow) over the same file: a floor for the read-and-deduplicate part of (1).

Printed: seconds, rows/s and the ratios ``raw s / ours s`` (end to end) and ``raw s / write s`` (write phase
alone), and the peak RSS (VmHWM) of each process, read right after the materialization (so the raw runs
do not count). The end-to-end run reads and deduplicates 10x (1e6) resp. 100x (1e7) more source rows than
it writes; the raw insert only writes, so the end-to-end ratio compares different amounts of work. The
online table is checked against the source (every driver's latest row, all columns) after each run.

Goals (from the issue), each printed as a PASS/FAIL line: ratio >= 0.5 for SQLite and PostgreSQL, >= 0.3
for Redis, at 1e6 and 1e7 source rows (checked for the end-to-end and for the write-phase ratio); peak RSS
of a 1e7 materialization < 1.5 GB (1,430 MiB). The largest size is run again with each DuckDB memory limit
of ``--memory-limits`` (``FEATURE_ROLLOUT_DUCKDB_MEMORY_LIMIT``; the main runs leave it unset, i.e. 2GB);
``auto`` (the default) adds ``1GB`` only when a main run exceeds the RSS goal.

The exit status is 0 (it is a report) unless ``--strict`` is given and a goal fails or a run failed.
PostgreSQL (``FEATURE_ROLLOUT_TEST_PG_URL``) gets a fresh schema and Redis (``FEATURE_ROLLOUT_TEST_REDIS_URL``)
a fresh key prefix, both removed afterwards; all files live in a temporary folder that is deleted
(``--data-dir`` keeps the generated Parquet for reuse). A server that does not answer is skipped.

Run::

    .venv/bin/python benchmarks/materialize_throughput.py --memory-limits 1GB
    .venv/bin/python benchmarks/materialize_throughput.py --sizes 1e6 --stores sqlite,redis --repeat 1 --strict
    .venv/bin/python benchmarks/materialize_throughput.py --profile /tmp/prof   # cProfile per run (slower)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bench_data import (
    active_table,
    current_rss_mib,
    definitions,
    describe_file,
    goal_line,
    interval,
    parse_sizes,
    peak_rss_mib,
    size_label,
    write_source,
)
from bench_stores import isolated_store, usable_stores

GOAL_RATIO = {"sqlite": 0.5, "postgres": 0.5, "redis": 0.3}
GOAL_RSS_MIB = 1.5e9 / 2**20  # 1.5 GB
CHILD_FLAG = "--child"


# --- the child: one materialization and its raw comparison, in a fresh process ----------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    # Warm imports, so that the timer sees work, not module loading.
    import duckdb  # noqa: F401

    import feature_rollout.materialize
    import feature_rollout.offline.retrieval  # noqa: F401
    from feature_rollout import FeatureStore
    from feature_rollout.online import open_online_store  # noqa: F401

    repo = Path(spec["tmp"]) / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(repo, config={"project": "bench", "registry": f"sqlite:///{spec['tmp']}/registry.db",
                                       "online_store": spec["online_store"]})
    store.apply(definitions(Path(spec["source"])))
    table = active_table(store)
    online = store.online_store
    write = {"seconds": 0.0, "calls": 0}
    original = online.write_batch

    def timed_write_batch(table: Any, batch: Any) -> int:
        started = time.perf_counter()
        try:
            return int(original(table, batch))
        finally:
            write["seconds"] += time.perf_counter() - started
            write["calls"] += 1

    online.write_batch = timed_write_batch  # type: ignore[method-assign]
    start, end = interval(spec["hours"])
    rss_before = current_rss_mib()
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    results = store.materialize(start, end)
    ours = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    peak = peak_rss_mib()
    online.write_batch = original  # type: ignore[method-assign]
    (result,) = results
    rows = online.dump(table)
    check = verify(rows, Path(spec["source"]))
    raw = RAW[online.kind](online, table, rows, spec)
    online.close()
    dedup = bare_dedup(Path(spec["source"]))
    return {"dedup_s": dedup, "ours_s": ours, "ledger_s": result.seconds, "rows_read": result.rows_read,
            "rows_written": result.rows_written, "write_s": write["seconds"], "chunks": write["calls"],
            "rss_before_mib": rss_before, "peak_rss_mib": peak, "dumped": rows.num_rows, "check": check, **raw}


def verify(rows: Any, source: Path) -> str:
    """Whether the dumped table holds exactly the latest source row of every driver (all columns compared)."""
    import duckdb

    connection = duckdb.connect()
    connection.register("dumped", rows)
    sql = (
        "WITH latest AS (SELECT *, row_number() OVER (PARTITION BY driver_id ORDER BY event_timestamp DESC) AS n "
        "FROM read_parquet(?)) "
        "SELECT (SELECT count(*) FROM latest WHERE n = 1), count(*) FROM dumped d JOIN latest l "
        "ON l.n = 1 AND d.driver_id = l.driver_id AND d._event_ts = epoch_us(l.event_timestamp) "
        "AND d._created_ts = epoch_us(l.created) AND d.f1 = l.f1 AND d.f2 = l.f2 AND d.f3 = l.f3 AND d.f4 = l.f4"
    )
    drivers, matching = connection.execute(sql, [str(source)]).fetchall()[0]
    connection.close()
    if drivers == matching == rows.num_rows:
        return "ok"
    return f"MISMATCH: {drivers} drivers in the source, {rows.num_rows} rows online, {matching} equal"


def bare_dedup(source: Path) -> float:
    """Seconds of a bare DuckDB query that keeps the latest row per driver of the whole file, read natively by
    DuckDB (default settings), into Arrow: a floor for the read + dedup part of materialization."""
    import duckdb

    connection = duckdb.connect()
    features = ", ".join(f"arg_max({c}, event_timestamp) AS {c}" for c in ("f1", "f2", "f3", "f4", "created"))
    started = time.perf_counter()
    result = connection.sql(
        f"SELECT driver_id, {features}, max(event_timestamp) AS event_timestamp FROM read_parquet(?) "
        "GROUP BY driver_id ORDER BY driver_id", params=[str(source)]).to_arrow_table()
    seconds = time.perf_counter() - started
    connection.close()
    assert result.num_rows > 0
    return seconds


def python_rows(rows: Any) -> list[tuple[Any, ...]]:
    return list(zip(*(rows.column(i).to_pylist() for i in range(rows.num_columns)), strict=True))


def best_of(repeat: int, setup: Any, run: Any, teardown: Any) -> list[float]:
    """Seconds of ``run`` (not of ``setup``/``teardown``), ``repeat`` times, each on a fresh empty target."""
    times = []
    for attempt in range(repeat):
        target = setup(attempt)
        started = time.perf_counter()
        run(target)
        times.append(time.perf_counter() - started)
        teardown(target)
    return times


def raw_sqlite(online: Any, table: Any, rows: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import sqlite3

    started = time.perf_counter()
    data = python_rows(rows)
    prep = time.perf_counter() - started
    conn = sqlite3.connect(online.path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)).fetchone()[0]
    marks = ", ".join("?" * rows.num_columns)

    def setup(attempt: int) -> str:
        name = f"raw_{attempt}"
        conn.execute(ddl.replace(f'"{table.name}"', f'"{name}"', 1))
        return name

    def run(name: str) -> None:
        conn.execute("BEGIN")
        conn.executemany(f'INSERT INTO "{name}" VALUES ({marks})', data)
        conn.execute("COMMIT")

    def teardown(name: str) -> None:
        count = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        assert count == rows.num_rows, (count, rows.num_rows)
        conn.execute(f'DROP TABLE "{name}"')

    times = best_of(spec["raw_repeat"], setup, run, teardown)
    conn.close()
    return {"raw_s": min(times), "raw_times": times, "raw_how": "executemany INSERT, 1 transaction",
            "prep_s": prep}


_PG_COPY_TYPES = {"Int64": ("int8", ">i8"), "Int32": ("int4", ">i4"), "Float32": ("float4", ">f4"),
                  "Float64": ("float8", ">f8")}


def raw_postgres(online: Any, table: Any, rows: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import struct

    import numpy as np
    import psycopg

    from feature_rollout.online.postgres import libpq_url

    dtypes = [*(c.dtype for c in (*table.join_keys, *table.features)), "Int64", "Int64"]
    names = ", ".join(f'"{n}"' for n in rows.column_names)
    started = time.perf_counter()
    data = python_rows(rows)
    prep_rows = time.perf_counter() - started
    # The COPY binary stream, encoded beforehand: per row a field count, then (length, big-endian value) per field.
    started = time.perf_counter()
    layout = [("n", ">i2")]
    for i, dtype in enumerate(dtypes):
        layout += [(f"l{i}", ">i4"), (f"v{i}", _PG_COPY_TYPES[dtype][1])]
    records = np.empty(rows.num_rows, dtype=layout)
    records["n"] = rows.num_columns
    for i, dtype in enumerate(dtypes):
        column = rows.column(i)
        assert column.null_count == 0, "the pre-encoded COPY assumes no nulls"
        records[f"l{i}"] = np.dtype(_PG_COPY_TYPES[dtype][1]).itemsize
        records[f"v{i}"] = column.to_numpy()
    stream = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + records.tobytes() + struct.pack(">h", -1)
    prep_bytes = time.perf_counter() - started
    conn = psycopg.connect(libpq_url(online.url), autocommit=True)

    def setup(attempt: int) -> str:
        name = f"raw_{attempt}"
        conn.execute(f'CREATE TABLE "{name}" (LIKE "{table.name}" INCLUDING ALL)')
        return name

    def copy_rows(name: str) -> None:
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f'COPY "{name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types([_PG_COPY_TYPES[d][0] for d in dtypes])
            for row in data:
                copy.write_row(row)

    def copy_bytes(name: str) -> None:
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f'COPY "{name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
            view = memoryview(stream)
            for offset in range(0, len(stream), 1 << 20):
                copy.write(view[offset:offset + (1 << 20)])

    def teardown(name: str) -> None:
        count = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # type: ignore[index]
        assert count == rows.num_rows, (count, rows.num_rows)
        conn.execute(f'DROP TABLE "{name}"')

    by_rows = best_of(spec["raw_repeat"], setup, copy_rows, teardown)
    by_bytes = best_of(spec["raw_repeat"], setup, copy_bytes, teardown)
    conn.close()
    return {"raw_s": min(by_rows), "raw_times": by_rows, "raw_how": "COPY (FORMAT BINARY), psycopg write_row",
            "prep_s": prep_rows, "floor_s": min(by_bytes), "floor_times": by_bytes,
            "floor_how": "COPY (FORMAT BINARY) of a stream encoded beforehand (NumPy)", "floor_prep_s": prep_bytes}


def raw_redis(online: Any, table: Any, rows: Any, spec: dict[str, Any]) -> dict[str, Any]:
    import socket
    from urllib.parse import urlsplit

    import redis

    key_column = rows.column(0).to_pylist()
    names = rows.column_names[len(table.join_keys):]
    started = time.perf_counter()
    values = [rows.column(n).to_pylist() for n in names]
    commands = []
    for key, *fields in zip(key_column, *values, strict=True):
        arguments: list[Any] = []
        for name, value in zip(names, fields, strict=True):
            arguments += (name, value)
        commands.append((f"[{key}]", arguments))
    prep = time.perf_counter() - started
    client = redis.Redis.from_url(online.url)
    chunk = spec["redis_pipeline"]

    def setup(attempt: int) -> str:
        return f"{online.key_prefix}:raw_{attempt}:"

    def run(prefix: str) -> None:
        for start in range(0, len(commands), chunk):
            pipe = client.pipeline(transaction=False)
            for key, arguments in commands[start:start + chunk]:
                pipe.execute_command("HSET", prefix + key, *arguments)
            pipe.execute()

    def teardown(prefix: str) -> None:
        keys = list(client.scan_iter(match=prefix + "*", count=10_000))
        assert len(keys) == rows.num_rows, (len(keys), rows.num_rows)
        for start in range(0, len(keys), 10_000):
            client.unlink(*keys[start:start + 10_000])

    times = best_of(spec["raw_repeat"], setup, run, teardown)

    # The floor: the same HSETs packed into RESP bytes beforehand (untimed) and written to a plain socket, the
    # replies counted, not parsed: what the server and the loopback take, without redis-py.
    url = urlsplit(online.url)
    if url.scheme != "redis" or url.password:
        client.close()
        return {"raw_s": min(times), "raw_times": times, "raw_how": f"redis-py pipelined HSET, {chunk} per round trip",
                "prep_s": prep}
    packer = client.connection_pool.get_connection()
    database = int((url.path or "/0").strip("/") or 0)

    def packed(prefix: str) -> list[tuple[bytes, int]]:
        return [(b"".join(b"".join(packer.pack_command("HSET", prefix + key, *arguments))
                          for key, arguments in commands[start:start + chunk]), len(commands[start:start + chunk]))
                for start in range(0, len(commands), chunk)]

    started = time.perf_counter()
    streams = {attempt: packed(setup(attempt)) for attempt in range(spec["raw_repeat"])}
    floor_prep = (time.perf_counter() - started) / spec["raw_repeat"]
    client.connection_pool.release(packer)

    def send(prefix: str) -> None:
        attempt = int(prefix.rsplit("_", 1)[1].rstrip(":"))
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379)) as sock:
            if database:
                sock.sendall(b"".join(packer.pack_command("SELECT", database)))
                assert sock.recv(64).startswith(b"+OK")
            for stream, expected in streams[attempt]:
                sock.sendall(stream)
                replies = b""
                while replies.count(b"\r\n") < expected:  # one integer reply (":7\r\n") per HSET
                    replies += sock.recv(1 << 20)
                assert not replies.startswith(b"-") and b"\n-" not in replies, replies[:200]

    floor = best_of(spec["raw_repeat"], setup, send, teardown)
    client.close()
    return {"raw_s": min(times), "raw_times": times, "raw_how": f"redis-py pipelined HSET, {chunk} per round trip",
            "prep_s": prep, "floor_s": min(floor), "floor_times": floor,
            "floor_how": f"HSETs packed beforehand, written to a socket, {chunk} per round trip",
            "floor_prep_s": floor_prep}


RAW = {"sqlite": raw_sqlite, "postgres": raw_postgres, "redis": raw_redis}


# --- the parent: data, isolation, children, report ------------------------------------------------------


@dataclass
class Run:
    store: str
    size: int
    memory_limit: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.result)


def run_child(store: str, size: int, hours: int, source: Path, tmp: Path, args: argparse.Namespace,
              memory_limit: str) -> Run:
    run = Run(store, size, memory_limit)
    env = dict(os.environ)
    if memory_limit == "default":
        env.pop("FEATURE_ROLLOUT_DUCKDB_MEMORY_LIMIT", None)
    else:
        env["FEATURE_ROLLOUT_DUCKDB_MEMORY_LIMIT"] = memory_limit
    with tempfile.TemporaryDirectory(prefix=f"{store}_{size}_", dir=tmp) as work, \
            isolated_store(store, Path(work)) as online_store:
        spec = {"store": store, "source": str(source), "hours": hours, "tmp": work, "online_store": online_store,
                "raw_repeat": args.raw_repeat, "redis_pipeline": args.redis_pipeline, "profile": None}
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            spec["profile"] = str(Path(args.profile) / f"materialize_{store}_{size_label(size)}_{memory_limit}.prof")
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, __file__, CHILD_FLAG, json.dumps(spec)], env=env,
                                  capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            run.error = f"timed out after {args.timeout} s"
            return run
        run.wall_s = time.perf_counter() - started
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            run.error = f"exit {done.returncode}: {tail}"
        else:
            run.result = json.loads(lines[-1][len("RESULT "):])
            if spec["profile"]:
                run.result["profile"] = spec["profile"]
    return run


def best(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.ok]
    return min(ok, key=lambda r: r.result["ours_s"]) if ok else runs[0]


def print_runs(runs: list[Run]) -> None:
    header = (f"{'store':<9} {'source':>10} {'written':>8} {'limit':>7} | {'ours s':>7} {'read/s':>10} "
              f"{'written/s':>10} | {'write s':>7} {'chunks':>6} | {'raw s':>6} {'raw/s':>9} | {'e2e ratio':>9} "
              f"{'write ratio':>11} | {'floor s':>7} {'floor ratio':>11} | {'RSS MiB':>7} {'base':>5}")
    print(header)
    print("-" * len(header))
    for run in runs:
        head = f"{run.store:<9} {run.size:>10,} "
        if not run.ok:
            print(head + f"ERROR {(run.error or '').splitlines()[-1]}")
            continue
        r = run.result
        floor = (f"{r['floor_s']:>7.3f} {r['floor_s'] / r['write_s']:>11.3f}" if "floor_s" in r
                 else f"{'-':>7} {'-':>11}")
        print(head + f"{r['rows_written']:>8,} {run.memory_limit:>7} | {r['ours_s']:>7.2f} "
              f"{r['rows_read'] / r['ours_s']:>10,.0f} {r['rows_written'] / r['ours_s']:>10,.0f} | "
              f"{r['write_s']:>7.3f} {r['chunks']:>6} | {r['raw_s']:>6.3f} {r['dumped'] / r['raw_s']:>9,.0f} | "
              f"{r['raw_s'] / r['ours_s']:>9.3f} {r['raw_s'] / r['write_s']:>11.3f} | {floor} | "
              f"{r['peak_rss_mib']:>7.0f} {r['rss_before_mib']:>5.0f}")


def print_raw_details(runs: list[Run]) -> None:
    print(f"{'store':<9} {'source':>10} | {'what':<5} | {'prep s':>6} | {'runs (s)':<20} | how")
    for run in runs:
        if not run.ok:
            continue
        r = run.result
        for what in ("raw", "floor"):
            if f"{what}_s" not in r:
                continue
            times = " ".join(f"{t:.3f}" for t in r[f"{what}_times"])
            prep = r["prep_s"] if what == "raw" else r["floor_prep_s"]
            print(f"{run.store:<9} {run.size:>10,} | {what:<5} | {prep:>6.3f} | {times:<20} | {r[f'{what}_how']}")
        print(f"{run.store:<9} {run.size:>10,} | dedup | bare DuckDB latest-row-per-driver query over the Parquet "
              f"file: {r['dedup_s']:.3f} s (ours minus write phase: {r['ours_s'] - r['write_s']:.3f} s)")
        print(f"{run.store:<9} {run.size:>10,} | check | online table vs the source's latest row per driver "
              f"(DuckDB): {r['check']}")


def check_goals(main_runs: list[Run], memory_runs: list[Run]) -> list[tuple[bool | None, str]]:
    goals: list[tuple[bool | None, str]] = []
    for run in main_runs:
        goal = GOAL_RATIO[run.store]
        what = f"[{run.store} {size_label(run.size)}] raw/ours"
        if not run.ok:
            goals.append((False, f"{what}: the run failed"))
            continue
        r = run.result
        e2e, write = r["raw_s"] / r["ours_s"], r["raw_s"] / r["write_s"]
        goals.append((e2e >= goal, f"{what} end to end >= {goal}: {e2e:.3f} ({r['raw_s']:.3f} s / "
                                   f"{r['ours_s']:.2f} s)"))
        goals.append((write >= goal, f"{what} write phase >= {goal}: {write:.3f} ({r['raw_s']:.3f} s / "
                                     f"{r['write_s']:.3f} s)"))
        if run.result.get("check") != "ok":
            goals.append((False, f"[{run.store} {size_label(run.size)}] online table is the latest row per driver: "
                                 f"{run.result.get('check')}"))
    largest = max((r.size for r in main_runs), default=0)
    for run in [r for r in main_runs if r.size == largest] + memory_runs:
        what = f"[{run.store} {size_label(run.size)}, DuckDB memory limit {run.memory_limit}] peak RSS < 1.5 GB"
        if not run.ok:
            goals.append((False, f"{what}: the run failed"))
        else:
            peak = run.result["peak_rss_mib"]
            goals.append((peak < GOAL_RSS_MIB, f"{what} ({GOAL_RSS_MIB:,.0f} MiB): {peak:,.0f} MiB"))
    return goals


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="source rows per run (default 1e6,1e7)")
    parser.add_argument("--entities", type=float, default=1e5, help="drivers (default 1e5); hours = size / entities")
    parser.add_argument("--stores", default="sqlite,postgres,redis", help="online stores (default all three)")
    parser.add_argument("--repeat", type=int, default=3, help="materializations per (store, size), each in a "
                        "fresh process; the fastest counts (default 3)")
    parser.add_argument("--raw-repeat", type=int, default=3, help="raw inserts per run; the fastest counts (3)")
    parser.add_argument("--redis-pipeline", type=int, default=5_000, help="HSETs per round trip in raw (5000)")
    parser.add_argument("--memory-limits", default="auto", help="DuckDB memory limits for extra runs of the "
                        "largest size: 'auto' (1GB if a default run exceeds the RSS goal), 'none', or e.g. "
                        "'1GB,512MB'")
    parser.add_argument("--data-dir", help="keep the generated Parquet here and reuse it (default: temporary)")
    parser.add_argument("--tmp-dir", help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run (default 1800)")
    parser.add_argument("--profile", help="write a cProfile of each materialization into this folder "
                        "(the profiled timings are slower)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a goal fails")
    args = parser.parse_args(argv)
    args.sizes = parse_sizes(args.sizes, "--sizes")
    args.entities = int(args.entities)
    for size in args.sizes:
        if size % args.entities:
            parser.error(f"size {size} is not a multiple of --entities {args.entities}")
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if args.repeat < 1 or args.raw_repeat < 1:
        parser.error("--repeat and --raw-repeat must be at least 1")
    return args


def print_profile(path: str, top: int = 12) -> None:
    import pstats

    print(f"  cProfile {path} (top {top} by own time):")
    stats = pstats.Stats(path)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (filename, line, function), (_, calls, own, cumulative, _) in rows:
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(f"    {own:7.3f} s own {cumulative:7.3f} s cum {calls:>8} calls  {short}:{line}({function})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores = usable_stores(args.stores)
    print(f"materialize_throughput: sizes={args.sizes} entities={args.entities:,} stores={stores} "
          f"repeat={args.repeat} raw_repeat={args.raw_repeat} ({date.today().isoformat()}, {os.cpu_count()} cores)",
          flush=True)
    started = time.perf_counter()
    main_runs: list[Run] = []
    memory_runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="materialize_throughput_", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        data_dir = Path(args.data_dir) if args.data_dir else tmp / "data"
        sources = {}
        for size in args.sizes:
            hours = size // args.entities
            path, seconds = write_source(data_dir, args.entities, hours)
            sources[size] = (path, hours)
            print(f"  source {describe_file(path)}" + (f" (written in {seconds:.1f} s)" if seconds else " (reused)"),
                  flush=True)
        for size in args.sizes:
            path, hours = sources[size]
            for store in stores:
                runs = []
                for _ in range(args.repeat):
                    run = run_child(store, size, hours, path, tmp, args, "default")
                    runs.append(run)
                    state = f"{run.result['ours_s']:.2f} s" if run.ok else f"ERROR {run.error}"
                    print(f"  done {store} {size:,}: {state} (process {run.wall_s:.1f} s)", flush=True)
                main_runs.append(best(runs))
        largest = max(args.sizes)
        limits = [] if args.memory_limits in ("none", "") else args.memory_limits.split(",")
        if limits == ["auto"]:
            exceeded = any(r.ok and r.result["peak_rss_mib"] >= GOAL_RSS_MIB for r in main_runs if r.size == largest)
            limits = ["1GB"] if exceeded else []
        for limit in limits:
            path, hours = sources[largest]
            for store in stores:
                run = run_child(store, largest, hours, path, tmp, args, limit.strip())
                memory_runs.append(run)
                state = f"{run.result['ours_s']:.2f} s" if run.ok else f"ERROR {run.error}"
                print(f"  done {store} {largest:,} with DuckDB memory limit {limit}: {state}", flush=True)
    print()
    print_runs(main_runs + memory_runs)
    print()
    print("ours s: wall time of store.materialize(start, end) of the whole interval into an empty table (registry,")
    print("ledger, DuckDB read + dedup of every source row, writes); read/s = source rows / ours s; written/s = rows")
    print("written / ours s; write s: time inside online_store.write_batch (chunks = calls); raw s: bare bulk insert")
    print("of the same deduplicated rows into an empty table (best of --raw-repeat; building Python rows not timed);")
    print("e2e ratio = raw s / ours s; write ratio = raw s / write s; floor s: the same rows as bytes encoded")
    print("beforehand (PostgreSQL COPY stream, Redis RESP over a socket): transfer + server only; floor ratio =")
    print("floor s / write s (information, not a goal); RSS MiB: peak RSS (VmHWM) of the process right after the")
    print("materialization; base: its RSS before it (imports, registry); limit: DuckDB memory limit.")
    print()
    print_raw_details(main_runs + memory_runs)
    if args.profile:
        print()
        for run in main_runs + memory_runs:
            if run.ok and run.result.get("profile"):
                print(f"[{run.store} {run.size:,}]")
                print_profile(run.result["profile"])
    print()
    goals = check_goals(main_runs, memory_runs)
    for ok, line in goals:
        print(goal_line(ok, line))
    print()
    print(f"total time: {time.perf_counter() - started:.0f} s")
    failed = any(ok is False for ok, _ in goals) or any(not r.ok for r in main_runs + memory_runs)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD_FLAG:
        print("RESULT " + json.dumps(child(json.loads(sys.argv[2]))), flush=True)
        sys.exit(0)
    sys.exit(main())
