"""Isolated online stores for the data-plane benchmarks (not a benchmark itself).

Every store a benchmark uses is private to it and removed afterwards:

- SQLite: a file in the benchmark's temporary folder.
- PostgreSQL (``FEATURE_ROLLOUT_TEST_PG_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``):
  a fresh schema ``bench_<hex>`` on the connection's ``search_path``, dropped afterwards with everything in it.
- Redis (``FEATURE_ROLLOUT_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``): a fresh ``key_prefix``
  ``b<hex>``; every key under it is deleted afterwards.

Servers must be on loopback; one that does not answer is skipped with a note.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PG_URL = os.environ.get("FEATURE_ROLLOUT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("FEATURE_ROLLOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STORES = ("sqlite", "postgres", "redis")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "")


def _loopback(url: str) -> None:
    host = urlsplit(url.replace("+psycopg", "")).hostname or ""
    if host not in _LOOPBACK:
        raise SystemExit(f"Refusing to benchmark against {host!r} ({url}): test servers must be on loopback.")


def unreachable(kind: str) -> str | None:
    """``None`` when the store's server answers (SQLite always does), else why not."""
    try:
        if kind == "postgres":
            import psycopg

            from feature_rollout.online.postgres import libpq_url

            _loopback(PG_URL)
            with psycopg.connect(libpq_url(PG_URL), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        elif kind == "redis":
            import redis

            _loopback(REDIS_URL)
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
            try:
                client.ping()
            finally:
                client.close()
    except Exception as err:
        return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    return None


def usable_stores(wanted: list[str]) -> list[str]:
    """``wanted`` without the stores whose server does not answer (with a note for each)."""
    unknown = sorted(set(wanted) - set(STORES))
    if unknown:
        raise SystemExit(f"unknown store(s) {', '.join(unknown)}; choose from {', '.join(STORES)}")
    usable = []
    for kind in wanted:
        reason = unreachable(kind)
        if reason:
            print(f"NOTE: skipping {kind}: its server is not reachable ({reason}).", flush=True)
        else:
            usable.append(kind)
    return usable


@contextmanager
def isolated_store(kind: str, tmp: Path) -> Iterator[dict[str, Any]]:
    """An ``online_store`` config of a store nobody else uses; its data is removed afterwards."""
    if kind == "sqlite":
        path = tmp / f"online_{uuid.uuid4().hex[:8]}.db"
        try:
            yield {"type": "sqlite", "path": str(path)}
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif kind == "postgres":
        with pg_schema() as url:
            yield {"type": "postgres", "url": url}
    elif kind == "redis":
        prefix = f"b{uuid.uuid4().hex[:10]}"
        try:
            yield {"type": "redis", "url": REDIS_URL, "key_prefix": prefix}
        finally:
            delete_redis_prefix(prefix)
    else:
        raise ValueError(kind)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped (CASCADE) afterwards."""
    import psycopg
    import sqlalchemy as sa

    from feature_rollout.online.postgres import libpq_url

    _loopback(PG_URL)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(PG_URL), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield sa.engine.make_url(PG_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(PG_URL), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def delete_redis_prefix(prefix: str) -> int:
    """Delete every key under ``prefix:``; how many there were."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted
