"""The UI's read model: a fixed number of queries per page whatever the history's size, pagination,
the coverage picture, and a clear 503 when the registry cannot be read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ui.conftest import client_for, history_at


@contextmanager
def counting(engine: sa.engine.Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize("module_registry_url", ["sqlite", "postgresql"], indirect=True)
def test_the_view_page_query_count_does_not_grow_with_versions(module_registry_url: str, tmp_path: Path):
    few = history_at(tmp_path / "few", module_registry_url)
    client = client_for(few.store.registry)
    engine = few.store.registry.engine
    path = "/workspaces/demo/views/driver_stats"
    client.get(path)  # warm up (the engine connects, SQLAlchemy compiles)
    with counting(engine) as small:
        assert client.get(path).status_code == 200
    # 30 more versions, each with materialization runs and a parity report
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.conftest import add_feature

    store = few.store
    data_file = few.repo / "data" / "driver_stats_v2.parquet"
    data = pq.read_table(data_file)
    for index in range(30):
        data = data.append_column(f"extra_{index}", pa.array(range(data.num_rows), pa.int64()))
    pq.write_table(data, data_file)
    for index in range(30):
        add_feature(few.repo, f'Field(name="extra_{index}", dtype=Int64)')
        store.apply(no_promote=True)
        store.materialize(datetime(2026, 1, 7, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC), ["driver_stats"],
                          version=f"v{index + 3}")
    with counting(engine) as large:
        page = client.get(path)
        assert page.status_code == 200 and ">v32</strong>" in page.text
    assert len(small) == len(large), (small, large)
    assert len(large) <= 14
    for other in ("/", "/workspaces/demo", "/workspaces/demo/plans", "/dags/feature_rollout_manual"):
        with counting(engine) as statements:
            assert client.get(other).status_code == 200
        assert len(statements) <= 10, (other, statements)


def test_pagination(tmp_path: Path):
    from feature_rollout import Entity, FeatureView, Field, FileSource
    from feature_rollout.store import FeatureStore
    from feature_rollout.types import Float32, Int64

    store = FeatureStore(tmp_path, config={"project": "big", "registry": f"sqlite:///{tmp_path / 'r.db'}",
                                           "online_store": {"type": "sqlite", "path": str(tmp_path / 'o.db')}})
    driver = Entity(name="driver", join_keys=["driver_id"])
    source = FileSource(name="src", path="data/x.parquet")
    views = [FeatureView(name=f"view_{i:03d}", entities=[driver], source=source,
                         schema=[Field(name="driver_id", dtype=Int64), Field(name="x", dtype=Float32)])
             for i in range(120)]
    store.apply([driver, source, *views])
    client = client_for(store.registry)
    first = client.get("/api/workspaces/demo/views".replace("demo", "big")).json()
    assert first["page"] == {"page": 1, "per_page": 50, "total": 120, "pages": 3}
    assert [v["name"] for v in first["views"]][:2] == ["view_000", "view_001"]
    last = client.get("/api/workspaces/big/views?page=3").json()
    assert [v["name"] for v in last["views"]] == [f"view_{i:03d}" for i in range(100, 120)]
    beyond = client.get("/api/workspaces/big/views?page=9&per_page=100").json()
    assert beyond["page"]["page"] == 2 and len(beyond["views"]) == 20
    searched = client.get("/api/workspaces/big/views?q=view_11").json()
    assert [v["name"] for v in searched["views"]] == [f"view_11{i}" for i in range(10)]
    assert client.get("/api/workspaces/big/views?q=view%5F").json()["page"]["total"] == 120  # '_' literal
    text = client.get("/workspaces/big?page=2").text
    assert "page 2 of 3 (120 in all)" in text and 'href="?page=3"' in text and 'href="?page=1"' in text


def test_coverage_picture_shows_gaps_and_failures():
    from feature_rollout.ui.coverage import coverage_svg

    def at(hour: int) -> datetime:
        return datetime(2026, 1, 1, hour, tzinfo=UTC)

    svg = coverage_svg([
        {"version": "v1", "covered": [{"start": at(0), "end": at(10)}], "failed": []},
        {"version": "v0", "covered": [{"start": at(0), "end": at(2)}, {"start": at(6), "end": at(10)}],
         "failed": [{"start": at(2), "end": at(4)}]},
    ])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    covered = [(float(x), float(w)) for x, w in
               re.findall(r'class="covered" x="([\d.]+)" y="\d+" width="([\d.]+)"', svg)]
    plot = 1000 - 70 - 10
    assert covered[0] == (70.0, float(plot))                  # v1 covers the whole axis
    assert covered[1] == (70.0, round(plot * 0.2, 1))         # v0: 0h-2h ...
    assert covered[2][0] == round(70 + plot * 0.6, 1)         # ... then 6h-10h: a gap from 4h to 6h
    assert svg.count('class="failed"') == 1 and "v0 failed: 2026-01-01 02:00 UTC to 2026-01-01 04:00 UTC" in svg
    assert coverage_svg([{"version": "v0", "covered": [], "failed": []}]) == ""
    assert "&lt;x&gt;" in coverage_svg([{"version": "<x>", "covered": [{"start": at(0), "end": at(1)}]}])


def test_an_unreadable_registry_is_a_clear_503_without_the_password():
    from feature_rollout.registry.registry import Registry

    client = client_for(Registry("postgresql+psycopg://ui:s3cret-pw@127.0.0.1:9/none?connect_timeout=2",
                                 auto_upgrade=False))
    page = client.get("/")
    assert page.status_code == 503 and "The registry cannot be read" in page.text and "s3cret-pw" not in page.text
    reply = client.get("/api/workspaces")
    assert reply.status_code == 503 and "s3cret-pw" not in reply.text and "127.0.0.1" in reply.text


def test_a_registry_without_tables_says_to_upgrade(tmp_path: Path):
    from feature_rollout.registry.registry import Registry

    client = client_for(Registry(f"sqlite:///{tmp_path / 'empty.db'}", auto_upgrade=False))
    reply = client.get("/api/workspaces")
    assert reply.status_code == 503 and "feature-rollout registry upgrade" in reply.json()["detail"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # the UI migrated nothing
    engine.dispose()
