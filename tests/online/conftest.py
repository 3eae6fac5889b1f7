"""Fixtures of the online store tests.

- ``online_store`` runs a test once per store: a SQLite file in ``tmp_path``, a fresh PostgreSQL
  schema (``pg_schema_url`` of ``tests/conftest.py``) and a unique Redis ``key_prefix`` on the server
  of ``FEATURE_ROLLOUT_TEST_REDIS_URL`` (its keys are deleted afterwards).
- As for PostgreSQL, a Redis server that does not answer skips those tests, or fails them under
  ``CI=true``.
- ``batch(table, rows)`` builds an Arrow table of ``table.arrow_schema()`` from row dicts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

from feature_rollout.config import OnlineStoreConfig
from feature_rollout.online import OnlineStore, OnlineTable, open_online_store
from tests.conftest import IN_CI, REDIS_URL

KINDS = ("sqlite", "postgres", "redis")

_redis_status: str | None = None


def redis_available() -> str | None:
    """``None`` when the test Redis answers, else why not."""
    global _redis_status
    if _redis_status is None:
        host = urlsplit(REDIS_URL).hostname or ""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise pytest.UsageError(
                f"Test servers must be on loopback; FEATURE_ROLLOUT_TEST_REDIS_URL points at {host!r}.")
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
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)")
        pytest.skip(reason)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A ``key_prefix`` no other test uses; every key under it is deleted afterwards."""
    require_redis()
    import redis

    prefix = f"frtest{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        for start in range(0, len(keys), 10_000):
            client.unlink(*keys[start:start + 10_000])
        client.delete(prefix)
    finally:
        client.close()


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
