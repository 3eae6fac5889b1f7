"""Shared fixtures.

- ``registry_url`` runs a test on both registry backends: a SQLite file in ``tmp_path`` and a fresh
  schema in the PostgreSQL named by ``FEATURE_ROLLOUT_TEST_PG_URL`` (default: the loopback server).
- Outside CI a missing PostgreSQL/Redis skips those tests; under ``CI=true`` it fails them.
- ``dump_registry(url)`` returns every row of every registry table, for "nothing changed" checks.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path as _Path

# Airflow reads these at its first import, so they are set before anything imports it: a private
# AIRFLOW_HOME (SQLite metadata), the example DAGs of dags/, no Airflow examples.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="feature-rollout-airflow-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "120")
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import sqlalchemy as sa

from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from feature_rollout.core.types import Float32, Int64, String
from feature_rollout.registry import tables
from feature_rollout.registry.engine import dispose_engines
from feature_rollout.registry.migrate import forget_checked

PG_URL = os.environ.get("FEATURE_ROLLOUT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("FEATURE_ROLLOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_pg_status: str | None = None


def _loopback_only(url: str) -> None:
    host = urlparse(url.replace("+psycopg", "")).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1", ""):
        raise pytest.UsageError(f"Test servers must be on loopback; {url!r} points at {host!r}.")


def postgres_available() -> str | None:
    """``None`` when the test PostgreSQL answers, else why not."""
    global _pg_status
    if _pg_status is None:
        _loopback_only(PG_URL)
        try:
            engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _pg_status = ""
        except Exception as err:
            _pg_status = f"PostgreSQL at {PG_URL} is not reachable: {type(err).__name__}: {err}"
    return _pg_status or None


def skip_or_fail(reason: str) -> None:
    """Skip for ``reason`` (a server, a program the test needs is missing), or fail under ``CI=true``."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing server or program is a failure, not a skip)")
    pytest.skip(reason)


def require_postgres() -> None:
    reason = postgres_available()
    if reason:
        skip_or_fail(reason)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh, empty schema (dropped afterwards)."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh registry URL, once per backend."""
    forget_checked()
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        dispose_engines()
    else:
        yield request.getfixturevalue("pg_schema_url")
    forget_checked()


def dump_registry(url: str) -> dict[str, list[str]]:
    """Every row of every registry table (sorted), as JSON text: equal dumps mean nothing changed."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            existing = set(sa.inspect(conn).get_table_names())
            dump = {}
            for known in tables.metadata.sorted_tables:
                if known.name not in existing:
                    continue
                table = sa.Table(known.name, sa.MetaData(), autoload_with=conn)  # the columns it has now
                rows = conn.execute(sa.select(table)).mappings().all()
                dump[table.name] = sorted(json.dumps(dict(r), sort_keys=True, default=str) for r in rows)
    finally:
        engine.dispose()
    return dump


# --- definitions --------------------------------------------------------------------------------


class Defs:
    """A small, editable set of definitions (the driver_stats example of DESIGN §3)."""

    def __init__(self) -> None:
        self.driver = Entity(name="driver", join_keys=["driver_id"])
        self.source = FileSource(name="driver_stats_source", path="data/driver_stats.parquet",
                                 created_timestamp_column="created")

    def view(self, features: tuple[str, ...] = ("conv_rate", "trips_today"), *, name: str = "driver_stats",
             version: str = "latest", prevent_destroy: bool = False, description: str = "",
             source: FileSource | None = None, dtypes: dict[str, Any] | None = None,
             entity: Entity | None = None, ttl: timedelta | None = timedelta(days=1),
             tags: dict[str, str] | None = None) -> FeatureView:
        types = {"conv_rate": Float32, "trips_today": Int64, "acc_rate": Float32, "avg_daily_trips": Int64,
                 "city": String, **(dtypes or {})}
        entity = entity or self.driver
        schema = [Field(name=key, dtype=Int64) for key in entity.join_keys]
        schema += [Field(name=f, dtype=types.get(f, Float32)) for f in features]
        return FeatureView(name=name, entities=[entity], ttl=ttl, source=source or self.source, schema=schema,
                           version=version, prevent_destroy=prevent_destroy, description=description, tags=tags)

    def service(self, view: FeatureView, *, name: str = "driver_svc", prevent_destroy: bool = False,
                features: list[Any] | None = None) -> FeatureService:
        return FeatureService(name=name, features=features or [view], prevent_destroy=prevent_destroy)


@pytest.fixture
def defs() -> Defs:
    return Defs()


@pytest.fixture
def store_factory(tmp_path: Path, registry_url: str) -> Callable[..., Any]:
    """Build FeatureStores on ``registry_url`` with a repo folder in ``tmp_path`` (no files needed)."""
    from feature_rollout.store import FeatureStore

    def make(workspace: str | None = None, project: str = "demo") -> FeatureStore:
        config = {"project": project, "registry": registry_url, "online_store": {"type": "sqlite",
                                                                                  "path": "data/online.db"}}
        return FeatureStore(tmp_path, workspace=workspace, config=config)

    return make


@pytest.fixture
def store(store_factory: Callable[..., Any]) -> Any:
    return store_factory()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{quote(str(path))}"


# --- data plane ---------------------------------------------------------------------------------

DEMO_END = datetime(2026, 1, 8, tzinfo=UTC)


_redis_status: str | None = None


def redis_available() -> str | None:
    """``None`` when the test Redis answers, else why not."""
    global _redis_status
    if _redis_status is None:
        _loopback_only(REDIS_URL)
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            client.ping()
            _redis_status = ""
        except Exception as err:
            _redis_status = f"Redis at {REDIS_URL} is not reachable: {type(err).__name__}: {err}"
        finally:
            client.close()
    return _redis_status or None


def require_redis() -> None:
    reason = redis_available()
    if reason:
        skip_or_fail(reason)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A ``key_prefix`` no other test uses; every key under it is deleted afterwards."""
    require_redis()
    prefix = f"frtest{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_redis_prefix(prefix)


def delete_redis_prefix(prefix: str) -> None:
    """Delete every key of an online store's ``key_prefix`` (and its table index)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.unlink(*keys[start:start + 10_000])
        client.delete(prefix)
    finally:
        client.close()


@pytest.fixture
def online_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An ``online_store`` config: SQLite by default; parametrize indirectly with "postgres" or "redis"."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield {"type": "sqlite", "path": str(tmp_path / "online.db")}
    elif kind == "postgres":
        yield {"type": "postgres", "url": request.getfixturevalue("pg_schema_url")}
    else:
        yield {"type": "redis", "url": REDIS_URL, "key_prefix": request.getfixturevalue("redis_prefix")}


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    """`feature-rollout init` with 20 drivers x 3 days of hourly rows ending at DEMO_END."""
    from feature_rollout.scaffold import init_repo

    return init_repo(tmp_path / "repo", project="demo", drivers=20, days=3, end=DEMO_END)


@pytest.fixture
def demo_store(demo_repo: Path, online_config: dict[str, Any]) -> Any:
    """A FeatureStore on the demo repo, its definitions applied (v0 of driver_stats active)."""
    from feature_rollout.store import FeatureStore

    store = FeatureStore(demo_repo, config={"project": "demo", "registry": f"sqlite:///{demo_repo}/data/registry.db",
                                            "online_store": online_config})
    store.apply()
    return store


def add_feature(repo: Path, line: str = 'Field(name="avg_daily_trips", dtype=Int64)') -> None:
    """Add a feature to the demo repo's driver_stats (a schema change: a new version)."""
    path = repo / "features.py"
    old = '        Field(name="trips_today", dtype=Int64),\n'
    path.write_text(path.read_text().replace(old, old + f"        {line},\n"))
