"""Plan/apply scale benchmark for the registry (DESIGN §7, §16: "plan time for 1,000 views").

What it measures, for each registry backend (SQLite file, PostgreSQL schema) and each number of
feature views N (default 100, 1,000 and 5,000), on a fresh registry per (backend, N):

1. ``new``        -- N views, none registered yet (every view is created, v0).
2. ``unchanged``  -- the same N definitions again (a no-op re-plan).
3. ``changed10``  -- every 10th view gets a sixth feature (a schema change: a new version v1).

For each phase it reports the wall time of ``store.plan(objects)`` (best of ``--repeat`` runs; the
first run stores the plan, later runs find it already stored) and of ``store.apply(objects)``
(plan and apply in one transaction, run once because it changes the registry), and the number of
registry round trips of each: every ``before_cursor_execute`` event on ``store.registry.engine``
counts as one, so an ``executemany`` counts once (SQLAlchemy's "insertmanyvalues" batches, if
any, count once per batch, as they are separate round trips). ``db s`` is the time spent between
``before_cursor_execute`` and ``after_cursor_execute`` (driver time, excluding fetching rows), and
``gc s`` the time spent in Python's cyclic garbage collector (``gc.callbacks``); ``1st s`` is the
first plan run, which also stores the plan.

Definitions: one shared entity ``driver`` (join key ``driver_id``); one data source per view
(``src_{i}`` reading ``data/src_{i}.parquet``, so N views mean N sources, as in a large repo;
``--shared-source`` uses a single source for every view instead); five features per view.

Goals checked at the end (PASS/FAIL lines): plan of 1,000 unchanged views under 0.5 s; apply of
1,000 new views under 5 s; the round trips of an unchanged re-plan do not grow with N (smallest
vs largest N). The exit status is 0 (it is a report) unless ``--strict`` is given and a goal fails (or a
phase raised).

PostgreSQL is read from ``FEATURE_ROLLOUT_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``, loopback only); each run gets a fresh
schema (``bench_<hex>``) that is dropped afterwards. An unreachable server is skipped with a note.

Run::

    make bench    # runs .venv/bin/python benchmarks/plan_scale.py
    .venv/bin/python benchmarks/plan_scale.py --sizes 100,1000 --backends sqlite --repeat 5 --strict
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feature_rollout import Entity, FeatureView, Field, FileSource
from feature_rollout.registry.engine import dispose_engines
from feature_rollout.store import FeatureStore
from feature_rollout.types import Float32, Int64

PG_URL = os.environ.get("FEATURE_ROLLOUT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORKSPACE = "bench"
PHASES = ("new", "unchanged", "changed10")
BASE_FEATURES = ("f0", "f1", "f2", "f3", "f4")
EXTRA_FEATURE = "f5"

GOAL_PLAN_UNCHANGED_1000_S = 0.5
GOAL_APPLY_NEW_1000_S = 5.0


# --- definitions ----------------------------------------------------------------------------------


def build_objects(n: int, *, changed: bool, shared_source: bool) -> list[object]:
    """N feature views (five features each) over one entity; ``changed`` adds a feature to every 10th view."""
    driver = Entity(name="driver", join_keys=["driver_id"])
    objects: list[object] = [driver]
    shared = FileSource(name="src_shared", path="data/src_shared.parquet", created_timestamp_column="created")
    if shared_source:
        objects.append(shared)
    for i in range(n):
        if shared_source:
            source = shared
        else:
            source = FileSource(name=f"src_{i}", path=f"data/src_{i}.parquet", created_timestamp_column="created")
            objects.append(source)
        features = list(BASE_FEATURES)
        if changed and i % 10 == 0:
            features.append(EXTRA_FEATURE)
        schema = [Field(name="driver_id", dtype=Int64)]
        schema += [Field(name=f, dtype=Float32 if j % 2 == 0 else Int64) for j, f in enumerate(features)]
        objects.append(FeatureView(name=f"fv_{i}", entities=[driver], ttl=timedelta(days=1), source=source,
                                   schema=schema, description=f"benchmark view {i}", tags={"bench": "plan_scale"}))
    return objects


# --- measuring ------------------------------------------------------------------------------------


class StatementCounter:
    """Counts DBAPI cursor executions (``executemany`` = 1) and the time spent in them."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        self.count = 0
        self.db_seconds = 0.0
        self._started: float | None = None
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args: Any) -> None:
        self.count += 1
        self._started = time.perf_counter()

    def _after(self, *_args: Any) -> None:
        if self._started is not None:
            self.db_seconds += time.perf_counter() - self._started
            self._started = None

    def reset(self) -> None:
        self.count = 0
        self.db_seconds = 0.0

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)


class GcTimer:
    """Time spent in Python's cyclic garbage collector (``gc.callbacks``) while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


@dataclass
class Timing:
    seconds: float  # best of the runs
    round_trips: int  # of the first run
    db_seconds: float  # of the best run
    gc_seconds: float  # of the best run
    first_seconds: float  # the first run (for a plan: the one that stores it)


@dataclass
class Row:
    backend: str
    size: int
    phase: str
    plan: Timing | None = None
    apply: Timing | None = None
    plan_summary: str = ""
    applied: bool | None = None
    error: str | None = None


def measure(counter: StatementCounter, call: Callable[[], Any], repeat: int = 1) -> tuple[Timing, Any]:
    """Best wall time of ``repeat`` calls; round trips are those of the first call."""
    runs: list[tuple[float, int, float, float]] = []
    result = None
    gc_timer = GcTimer()
    try:
        for _ in range(max(1, repeat)):
            gc.collect()
            counter.reset()
            gc_timer.seconds = 0.0
            started = time.perf_counter()
            result = call()
            runs.append((time.perf_counter() - started, counter.count, counter.db_seconds, gc_timer.seconds))
    finally:
        gc_timer.close()
    best = min(runs)
    return Timing(best[0], runs[0][1], best[2], best[3], runs[0][0]), result


def summarize(plan: Any) -> str:
    short = {"create": "create", "unchanged": "same", "new_version": "newver", "update_in_place": "upd"}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in plan.summary.items())


# --- backends -------------------------------------------------------------------------------------


def _loopback(url: str) -> None:
    host = sa.engine.make_url(url).host or ""
    if host not in ("127.0.0.1", "localhost", "::1", ""):
        raise SystemExit(f"Refusing to benchmark against {host!r}: FEATURE_ROLLOUT_TEST_PG_URL must be on loopback.")


def postgres_unreachable() -> str | None:
    """``None`` when PostgreSQL answers, else why not."""
    _loopback(PG_URL)
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        return f"{type(err).__name__}: {first_line}"
    return None


@contextmanager
def fresh_registry(backend: str, tmp: Path) -> Iterator[str]:
    """A URL of an empty registry, removed afterwards."""
    if backend == "sqlite":
        path = tmp / f"registry_{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            dispose_engines()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            dispose_engines()
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


# --- the benchmark --------------------------------------------------------------------------------


def run_size(backend: str, size: int, repeat: int, shared_source: bool, tmp: Path) -> list[Row]:
    rows = [Row(backend, size, phase) for phase in PHASES]
    base = build_objects(size, changed=False, shared_source=shared_source)
    changed = build_objects(size, changed=True, shared_source=shared_source)
    desired = {"new": base, "unchanged": base, "changed10": changed}
    repo = tmp / f"repo_{backend}_{size}"
    repo.mkdir(parents=True, exist_ok=True)
    with fresh_registry(backend, tmp) as url:
        store = FeatureStore(repo, config={"project": WORKSPACE, "registry": url})
        store.registry.load_state(WORKSPACE)  # warm-up: runs the migrations of the new registry
        counter = StatementCounter(store.registry.engine)
        try:
            for row in rows:
                objects = desired[row.phase]
                try:
                    row.plan, plan = measure(counter, partial(store.plan, objects), repeat)
                    row.plan_summary = summarize(plan)
                    row.apply, result = measure(counter, partial(store.apply, objects))
                    row.applied = result.applied
                except Exception as err:
                    row.error = f"{type(err).__name__}: {err}"
                    traceback.print_exc()
                    break
        finally:
            counter.close()
    return rows


def fmt(timing: Timing | None, attr: str, width: int, spec: str) -> str:
    return f"{getattr(timing, attr):{width}{spec}}" if timing else f"{'-':>{width}}"


def print_table(rows: list[Row]) -> None:
    header = (f"{'backend':<10} {'views':>5} {'phase':<9} | {'plan s':>7} {'1st s':>7} {'RT':>3} {'db s':>6} "
              f"{'gc s':>6} | {'apply s':>7} {'RT':>3} {'db s':>6} {'gc s':>6} | plan summary")
    print(header)
    print("-" * len(header))
    previous = None
    for row in rows:
        if previous is not None and (row.backend, row.size) != previous:
            print()
        previous = (row.backend, row.size)
        tail = f"ERROR {row.error}" if row.error else row.plan_summary + ("" if row.applied in (None, True) else
                                                                         " (nothing applied)")
        p, a = row.plan, row.apply
        print(f"{row.backend:<10} {row.size:>5} {row.phase:<9} | {fmt(p, 'seconds', 7, '.3f')} "
              f"{fmt(p, 'first_seconds', 7, '.3f')} {fmt(p, 'round_trips', 3, 'd')} {fmt(p, 'db_seconds', 6, '.3f')} "
              f"{fmt(p, 'gc_seconds', 6, '.3f')} | {fmt(a, 'seconds', 7, '.3f')} {fmt(a, 'round_trips', 3, 'd')} "
              f"{fmt(a, 'db_seconds', 6, '.3f')} {fmt(a, 'gc_seconds', 6, '.3f')} | {tail}")


def find(rows: list[Row], backend: str, size: int, phase: str) -> Row | None:
    return next((r for r in rows if (r.backend, r.size, r.phase) == (backend, size, phase)), None)


def timing_goal(rows: list[Row], backend: str, phase: str, measure: str, limit: float, name: str) -> tuple[str, str]:
    """PASS/FAIL/SKIP for "``measure`` of 1,000 views in ``phase`` under ``limit`` seconds"."""
    row = find(rows, backend, 1000, phase)
    if row is None:
        return "SKIP", f"{name}: 1000 not in --sizes"
    timing = getattr(row, measure)
    if timing is None:
        return "FAIL", f"{name}: no measurement ({row.error})"
    return ("PASS" if timing.seconds < limit else "FAIL"), f"{name}: {timing.seconds:.3f} s"


def check_goals(rows: list[Row], backends: list[str], sizes: list[int]) -> list[tuple[str, str]]:
    """(status, line) per goal and backend; status is PASS, FAIL or SKIP."""
    results: list[tuple[str, str]] = []
    for backend in backends:
        if not any(r.backend == backend for r in rows):
            continue
        results.append(timing_goal(rows, backend, "unchanged", "plan", GOAL_PLAN_UNCHANGED_1000_S,
                                   f"[{backend}] plan of 1,000 unchanged views < {GOAL_PLAN_UNCHANGED_1000_S} s"))
        results.append(timing_goal(rows, backend, "new", "apply", GOAL_APPLY_NEW_1000_S,
                                   f"[{backend}] apply of 1,000 new views < {GOAL_APPLY_NEW_1000_S} s"))

        small, large = min(sizes), max(sizes)
        name = f"[{backend}] round trips of an unchanged re-plan do not grow ({small} vs {large} views)"
        a, b = find(rows, backend, small, "unchanged"), find(rows, backend, large, "unchanged")
        if small == large:
            results.append(("SKIP", f"{name}: needs two sizes"))
        elif a is None or b is None or a.plan is None or b.plan is None:
            results.append(("FAIL", f"{name}: no measurement"))
        else:
            ok = b.plan.round_trips <= a.plan.round_trips
            results.append(("PASS" if ok else "FAIL", f"{name}: {a.plan.round_trips} vs {b.plan.round_trips}"))
    return results


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 / 1024 if sys.platform == "darwin" else kib / 1024  # bytes on macOS, KiB on Linux


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,5000", help="numbers of feature views (default 100,1000,5000)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N plan timings (default 3)")
    parser.add_argument("--shared-source", action="store_true", help="one data source for all views")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a goal fails")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, not {args.sizes!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes must be positive integers")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends: list[str] = list(args.backends)
    if "postgresql" in backends:
        reason = postgres_unreachable()
        if reason:
            print(f"NOTE: skipping PostgreSQL: {PG_URL} is not reachable ({reason}).")
            backends.remove("postgresql")
    sources = "one shared source" if args.shared_source else "one source per view"
    print(f"plan_scale: sizes={args.sizes} backends={backends} repeat={args.repeat} ({sources}, 5 features/view)")
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plan_scale_") as tmp:
        for backend in backends:
            for size in args.sizes:
                t0 = time.perf_counter()
                rows += run_size(backend, size, args.repeat, args.shared_source, Path(tmp))
                print(f"  done {backend} {size} views in {time.perf_counter() - t0:.1f} s", flush=True)
    print()
    print_table(rows)
    print()
    print("plan s: best of --repeat; 1st s: the first plan run (it also stores the plan); apply s: one run (plan +")
    print("apply in one transaction); RT: registry round trips (first run); db s: time inside cursor executions;")
    print("gc s: time in Python's cyclic garbage collector (both of the best run).")
    print()
    results = check_goals(rows, backends, args.sizes)
    for status, line in results:
        print(f"{status}: {line}")
    print()
    print(f"peak RSS: {peak_rss_mib():.0f} MiB; total time: {time.perf_counter() - started:.1f} s")
    failed = any(status == "FAIL" for status, _ in results) or any(r.error for r in rows)
    if args.strict and failed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
