"""UI page latency on a big registry (DESIGN §13: "fast with hundreds of views and thousands of versions").

Builds, with the real operations (apply, the ledger's run records, parity reports):

- workspace ``wide``: ``--views`` views (default 500), each given ``--rounds`` schema changes
  (default 10, so 5,500 versions), and 48 ledger runs on the versions of the first view;
- workspace ``deep``: one view with ``--deep`` versions (default 1,000; each swaps one feature for
  another, so every version is a new schema of five fields).

Then requests each page through the app in-process (FastAPI's TestClient, no network) ``--repeat``
times and reports the median latency, the number of SQL statements, and the *raw limit*: the median
time of replaying exactly those statements, with their parameters, on a bare DBAPI connection of
the same database (no SQLAlchemy Core, no Python post-processing, no rendering). ``ratio`` is
raw / page: 1.0 would mean the page costs nothing beyond its queries.

Run::

    .venv/bin/python benchmarks/ui_pages.py                       # SQLite
    .venv/bin/python benchmarks/ui_pages.py --backend postgresql  # a fresh schema on the test server
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

PG_URL = os.environ.get("FEATURE_ROLLOUT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def definitions(count: int, extra: int, prefix: str = "view", rotate: bool = False) -> list[Any]:
    """``count`` views with ``3 + extra`` features, or (``rotate``) with three features and ``x{extra}``."""
    from feature_rollout import Entity, FeatureView, Field, FileSource
    from feature_rollout.types import Float32, Int64

    driver = Entity(name="driver", join_keys=["driver_id"], description="A driver.")
    source = FileSource(name="src", path="data/src.parquet")
    views = [FeatureView(name=f"{prefix}_{i:04d}", entities=[driver], source=source, description=f"View {i}",
                         schema=[Field(name="driver_id", dtype=Int64)]
                         + [Field(name=f"f{j}", dtype=Float32) for j in range(3 if rotate else 3 + extra)]
                         + ([Field(name=f"x{extra}", dtype=Float32)] if rotate else []))
             for i in range(count)]
    return [driver, source, *views]


def build(url: str, base: Path, views: int, rounds: int, deep: int) -> Any:
    from feature_rollout.core.intervals import Interval
    from feature_rollout.store import FeatureStore

    def store(workspace: str) -> FeatureStore:
        return FeatureStore(base, workspace=workspace, config={
            "project": workspace, "registry": url, "online_store": {"type": "sqlite", "path": str(base / "o.db")}})

    wide = store("wide")
    started = time.perf_counter()
    for extra in range(rounds + 1):
        wide.apply(definitions(views, extra), no_promote=extra > 0)
    ledger = wide.ledger
    hour = datetime(2026, 1, 1, tzinfo=UTC)
    for version in range(rounds + 1):
        for step in range(48 // (rounds + 1) + 1):
            window = Interval(hour + timedelta(hours=step), hour + timedelta(hours=step + 1))
            run = ledger.start_run("wide", "view_0000", version, window, run_id=f"bench/run_{step}/materialize")
            ledger.finish_run(run, rows_read=1000, rows_written=100)
    deep_store = store("deep")
    for extra in range(deep):
        deep_store.apply(definitions(1, extra, prefix="deep", rotate=True), no_promote=extra > 0)
    print(f"built: {views} views x {rounds + 1} versions + 1 view x {deep} versions in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return wide.registry


class Client:
    """Requests straight into the ASGI app on one event loop (no sockets, no per-request threads, unlike
    TestClient, whose own overhead is several milliseconds)."""

    def __init__(self, app: Any) -> None:
        import asyncio

        import httpx

        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path=""),
                                        base_url="http://bench")

    def get(self, path: str) -> Any:
        return self.loop.run_until_complete(self.client.get(path))


def median_seconds(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(client: Client, engine: sa.engine.Engine, path: str, repeat: int) -> tuple[float, int, float]:
    """(median page seconds, statements, median seconds of those statements on a bare DBAPI connection)."""
    assert client.get(path).status_code == 200, path
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    client.get(path)
    sa.event.remove(engine, "before_cursor_execute", capture)
    page = median_seconds(lambda: client.get(path), repeat)
    queries = [(s, p) for s, p in statements if s.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT",
                                                                          "ROLLBACK")]
    raw_connection = engine.raw_connection()

    def replay() -> None:
        cursor = raw_connection.cursor()
        for statement, parameters in queries:
            cursor.execute(statement, parameters)
            cursor.fetchall()
        cursor.close()
        raw_connection.rollback()

    try:
        return page, len(queries), median_seconds(replay, repeat)
    finally:
        raw_connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--views", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--deep", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema (to reuse it with --registry)")
    parser.add_argument("--registry", help="measure an existing registry built by an earlier run (its URL, printed "
                                           "by that run) instead of building one; it is migrated to the newest schema")
    args = parser.parse_args()

    from feature_rollout.registry.engine import dispose_engines, safe_url
    from feature_rollout.ui.app import create_app

    base = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    schema = None
    if args.registry or args.backend == "sqlite":
        url = f"sqlite:///{base / 'registry.db'}"
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with sa.create_engine(PG_URL).begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)
    try:
        if args.registry:
            from feature_rollout.registry.registry import Registry

            registry = Registry(args.registry)
        else:
            registry = build(url, base, args.views, args.rounds, args.deep)
            print(f"registry: {safe_url(url)} (reuse it with --registry)")
        client = Client(create_app(lambda: registry))
        pages = {
            "workspaces": "/",
            "views, page 1 of wide": "/workspaces/wide",
            "views, page 10 of wide": "/workspaces/wide?page=10",
            "view with runs (wide)": "/workspaces/wide/views/view_0000",
            f"view with {args.deep} versions": "/workspaces/deep/views/deep_0000",
            "same, versions page 40": "/workspaces/deep/views/deep_0000?versions_page=40",
            "plans of deep": "/workspaces/deep/plans",
            "JSON of the deep view": "/api/workspaces/deep/views/deep_0000",
        }
        print(f"\n{args.backend}: median of {args.repeat} requests; raw = the same statements on a bare DBAPI "
              "connection\n")
        print(f"{'page':<34}{'page ms':>9}{'queries':>9}{'raw ms':>9}{'ratio':>8}")
        for label, path in pages.items():
            page, count, raw = measure(client, registry.engine, path, args.repeat)
            print(f"{label:<34}{page * 1000:>9.1f}{count:>9}{raw * 1000:>9.1f}{raw / page:>8.2f}", flush=True)
    finally:
        dispose_engines()
        if schema and not args.keep:
            with sa.create_engine(PG_URL).begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
