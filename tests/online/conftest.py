"""Fixtures of the online store tests.

- ``online_store`` runs a test once per store: a SQLite file in ``tmp_path``, a fresh PostgreSQL
  schema (``pg_schema_url`` of ``tests/conftest.py``) and a unique Redis ``key_prefix`` on the server
  of ``FEATURE_ROLLOUT_TEST_REDIS_URL`` (its keys are deleted afterwards).
- As for PostgreSQL, a Redis server that does not answer skips those tests, or fails them under
  ``CI=true``.
- ``batch(table, rows)`` builds an Arrow table of ``table.arrow_schema()`` from row dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feature_rollout.config import OnlineStoreConfig
from feature_rollout.online import OnlineStore, OnlineTable, open_online_store
from tests.conftest import REDIS_URL

KINDS = ("sqlite", "postgres", "redis")

@pytest.fixture(params=KINDS)
def online_config(request: pytest.FixtureRequest, tmp_path: Path) -> OnlineStoreConfig:
    """The configuration of a fresh, empty online store, once per store."""
    if request.param == "sqlite":
        return OnlineStoreConfig("sqlite", str(tmp_path / "data" / "online.db"))
    if request.param == "postgres":
        return OnlineStoreConfig("postgres", request.getfixturevalue("pg_schema_url"))
    return OnlineStoreConfig("redis", REDIS_URL, {"key_prefix": request.getfixturevalue("redis_prefix")})


@pytest.fixture
def online_store(online_config: OnlineStoreConfig) -> Iterator[OnlineStore]:
    store = open_online_store(online_config)
    yield store
    store.close()


def batch(table: OnlineTable, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """``rows`` (dicts; a missing feature is null) as a batch of ``table``."""
    schema = table.arrow_schema()
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def keys_table(table: OnlineTable, keys: Sequence[Any]) -> pa.Table:
    """Entity keys as a table of the join key columns; a key is a value, or a tuple for several join keys."""
    schema = pa.schema([table.arrow_schema().field(name) for name in table.key_names])
    tuples = [k if isinstance(k, tuple) else (k,) for k in keys]
    return pa.Table.from_pylist([dict(zip(table.key_names, k, strict=True)) for k in tuples], schema=schema)
