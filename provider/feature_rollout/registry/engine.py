"""Engines for the registry database: one per URL, with transactions that mean what they say.

SQLite: pysqlite's own transaction handling is switched off and we emit ``BEGIN`` ourselves, so
that DDL is transactional and a *write* transaction takes the write lock at its start
(``BEGIN IMMEDIATE``). Without that, two processes that both read and then write get
``database is locked`` instead of one waiting for the other.

PostgreSQL: ``postgresql://`` URLs use psycopg 3. Writers serialize on the workspace row
(``SELECT ... FOR UPDATE``) in :mod:`feature_rollout.registry.registry`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from feature_rollout.core.errors import RegistryUnavailableError, RepoConfigError
from feature_rollout.redaction import masked_url

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def normalize_url(url: str | URL) -> URL:
    """Parse a registry URL; ``postgres://`` and ``postgresql://`` mean psycopg 3."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as err:
        raise RepoConfigError(
            f"The registry URL {safe_url(url)} is not a database URL; use 'sqlite:///path/registry.db' or "
            "'postgresql+psycopg://user@host:5432/db'."
        ) from err
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise RepoConfigError(
            f"The registry must be SQLite or PostgreSQL, not {parsed.get_backend_name()!r} ({safe_url(parsed)})."
        )
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    return masked_url(url if isinstance(url, str) else url.render_as_string(hide_password=False))


def get_engine(url: str | URL, pool: Mapping[str, int] | None = None) -> Engine:
    """The process-wide engine for ``url`` (created on first use; no I/O until a connection is made).

    :param pool: PostgreSQL pool settings (``pool_size``, ``max_overflow``, ``pool_recycle``, ``pool_timeout``).
    """
    parsed = normalize_url(url)
    key = parsed.render_as_string(hide_password=False) + repr(sorted((pool or {}).items()))
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _create_engine(parsed, dict(pool or {}))
            _ENGINES[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, and after a fork)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def _create_engine(url: URL, pool: dict[str, int]) -> Engine:
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        return sa.create_engine(url, pool_pre_ping=True, **{"pool_size": 5, "max_overflow": 5, **pool})
    except NoSuchModuleError as err:
        raise RepoConfigError(
            f"No driver for {safe_url(url)}: install the PostgreSQL extra "
            "(pip install 'airflow-provider-feature-rollout[postgres]')."
        ) from err
    except ModuleNotFoundError as err:
        raise RepoConfigError(
            f"The database driver for {safe_url(url)} is missing ({err.name}); install the PostgreSQL extra "
            "(pip install 'airflow-provider-feature-rollout[postgres]')."
        ) from err


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RegistryUnavailableError(
                f"Cannot create the folder of the SQLite registry {database}: {err.strerror}. Point 'registry' in "
                "feature_store.yaml at a writable path."
            ) from None
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module docstring
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (a persistent setting, so usually already done). Switching needs an
    exclusive lock and SQLite may refuse it at once, without waiting, while another process writes
    (seen when two processes open a new registry together): then wait and look again."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def is_postgres(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "postgresql"


@contextlib.contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    """One transaction. ``write=True`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``).

    Connection failures become :class:`RegistryUnavailableError` with the password masked.
    """
    try:
        with engine.connect() as conn:
            if write and engine.dialect.name == "sqlite":
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn
    except DBAPIError as err:
        if err.connection_invalidated or _is_connection_error(err):
            raise RegistryUnavailableError(
                f"Cannot reach the registry at {safe_url(engine.url)}: {_first_line(err.orig)}. Check that the "
                "database server is running and the URL (feature_store.yaml 'registry', or the Airflow connection) "
                "is right."
            ) from None
        raise


def _is_connection_error(err: DBAPIError) -> bool:
    if isinstance(err, sa.exc.OperationalError):
        text = str(err.orig).lower()
        return any(s in text for s in ("connection", "could not connect", "unable to open database", "timeout",
                                       "server closed", "terminating", "no such host", "name or service"))
    return False


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if error is not None and str(error).strip() else "no reply"
