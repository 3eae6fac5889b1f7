"""The embedded online store: one SQLite file, one typed table per feature view version.

Columns are typed (``INTEGER``, ``REAL``, ``TEXT``, ``BLOB``): Bool is stored as 0/1, UnixTimestamp as
integer microseconds and arrays as JSON text. Those storage types cannot tell Float32 from Float64 or
an array from a string, so the exact shape of each table is recorded in the catalog table
``_fr_online_tables`` in the same transaction that creates the table; ``create_table`` compares
against it. Writes are one ``executemany`` of an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``
(newer-wins) in one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS
from feature_rollout.core.errors import OnlineStoreError, OnlineStoreUnavailableError, OnlineTableMissing
from feature_rollout.core.refs import validate_name
from feature_rollout.core.types import Array, parse_type
from feature_rollout.online.base import (
    Column,
    OnlineTable,
    array_from_plain,
    check_shape,
    conform_batch,
    conform_keys,
    plain_values,
    read_schema,
    requested_features,
    shape_columns_from_json,
    shape_json,
    sort_by_keys,
)

CATALOG = "_fr_online_tables"
BUSY_TIMEOUT_SECONDS = 30.0
_STORAGE = {"Bytes": "BLOB", "String": "TEXT", "Bool": "INTEGER", "Int32": "INTEGER", "Int64": "INTEGER",
            "Float32": "REAL", "Float64": "REAL", "UnixTimestamp": "INTEGER"}


def sqlite_type(dtype: str) -> str:
    """The column type of a feature type; arrays are JSON text."""
    parsed = parse_type(dtype)
    return "TEXT" if isinstance(parsed, Array) else _STORAGE[parsed.name]


def quote(name: str) -> str:
    """A quoted SQLite identifier (names are validated too, but nothing goes into SQL unquoted)."""
    return '"' + name.replace('"', '""') + '"'


class SqliteOnlineStore:
    """The SQLite online store (the embedded default).

    One connection per store object, opened at the first operation (WAL, ``synchronous=NORMAL``);
    the parent folder of the file is created then. A lock serializes the connection's users, so one
    store object may be shared by threads.

    :param path: the database file (``":memory:"`` works too, for one store object).
    """

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # --- connection ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            yield self._conn

    def _connect(self) -> sqlite3.Connection:
        check = ("Check that the folder exists or can be created and is writable (online_store path in "
                 "feature_store.yaml).")
        try:
            if self.path != ":memory:" and not self.path.startswith("file:"):
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so that DDL is transactional too and a
            # writer takes the write lock up front instead of failing to upgrade a read lock.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)
        except (OSError, sqlite3.Error) as err:
            raise OnlineStoreUnavailableError(
                f"Cannot open the SQLite online store at {self.path}: {err}. {check}"
            ) from None
        try:
            # WAL: readers (online serving) do not block the writer (materialization) nor the other way round;
            # NORMAL is durable across application crashes, which is what an online cache needs.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as err:
            conn.close()
            raise OnlineStoreUnavailableError(
                f"Cannot open the SQLite online store at {self.path}: {err}. {check}"
            ) from None
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # some errors (a full disk, an interrupt) have rolled back already
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- tables -------------------------------------------------------------------------------

    def create_table(self, table: OnlineTable) -> None:
        with self._write() as conn:
            if _exists(conn, table.name):
                check_shape(table, self._recorded_shape(conn, table.name), f"the SQLite file {self.path}")
                return
            columns = [f"{quote(c.name)} {sqlite_type(c.dtype)} NOT NULL" for c in table.join_keys]
            columns += [f"{quote(c.name)} {sqlite_type(c.dtype)}" for c in table.features]
            columns += [f"{quote(EVENT_TS)} INTEGER NOT NULL", f"{quote(CREATED_TS)} INTEGER NOT NULL"]
            keys = ", ".join(quote(k) for k in table.key_names)
            conn.execute(f"CREATE TABLE {quote(table.name)} ({', '.join(columns)}, PRIMARY KEY ({keys}))")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {CATALOG} (name TEXT PRIMARY KEY, shape TEXT NOT NULL)")
            conn.execute(f"INSERT OR REPLACE INTO {CATALOG} (name, shape) VALUES (?, ?)",
                         (table.name, shape_json(table)))

    def _recorded_shape(self, conn: sqlite3.Connection, name: str) -> list[tuple[str, str]]:
        row = None
        if _exists(conn, CATALOG):
            row = conn.execute(f"SELECT shape FROM {CATALOG} WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise OnlineStoreError(
                f"The table '{name}' in the SQLite file {self.path} was not created by feature-rollout (it is not "
                f"in {CATALOG}); drop or rename it, or point online_store at another file."
            )
        return shape_columns_from_json(row[0])

    def drop_table(self, name: str) -> None:
        validate_name(name, "online table")
        with self._write() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")
            if _exists(conn, CATALOG):
                conn.execute(f"DELETE FROM {CATALOG} WHERE name = ?", (name,))

    def table_exists(self, name: str) -> bool:
        validate_name(name, "online table")
        with self._connection() as conn:
            return _exists(conn, name)

    # --- rows ---------------------------------------------------------------------------------

    def write_batch(self, table: OnlineTable, batch: pa.Table | pa.RecordBatch) -> int:
        data = conform_batch(table, batch)
        if data.num_rows == 0:
            return 0
        columns = _all_columns(table)
        # Column-wise conversion, then zip: one Python object per cell, no per-cell Arrow access.
        rows = zip(*(plain_values(data.column(c.name), c.dtype) for c in columns), strict=True)
        target = quote(table.name)
        updates = ", ".join(f"{quote(c.name)} = excluded.{quote(c.name)}" for c in columns[len(table.join_keys):])
        sql = (
            f"INSERT INTO {target} ({', '.join(quote(c.name) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(quote(k) for k in table.key_names)}) DO UPDATE SET {updates} "
            # newer-wins: an older or equal (event, created) pair never overwrites
            f"WHERE (excluded.{quote(EVENT_TS)}, excluded.{quote(CREATED_TS)}) "
            f"> ({target}.{quote(EVENT_TS)}, {target}.{quote(CREATED_TS)})"
        )
        with self._write() as conn, self._table_errors(table.name):
            before = conn.total_changes
            conn.executemany(sql, rows)
            # total_changes counts inserted and updated rows, not conflicts the WHERE turned away
            return conn.total_changes - before

    def read(self, table: OnlineTable, keys: pa.Table, features: Sequence[str]) -> pa.Table:
        wanted = requested_features(table, features)
        key_data = conform_keys(table, keys)
        selected = ", ".join([f"t.{quote(c.name)}" for c in wanted] + [f"t.{quote(EVENT_TS)}"])
        rows: list[tuple[Any, ...]] = []
        with self._connection() as conn, self._table_errors(table.name):
            for values, params in _key_chunks(conn, table, key_data):
                rows += conn.execute(
                    f"WITH {values} SELECT {selected} FROM k LEFT JOIN {quote(table.name)} AS t ON {_on(table)} "
                    "ORDER BY k.ord", params).fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [()] * (len(wanted) + 1)
        arrays = [array_from_plain(values, c.dtype) for values, c in zip(columns, wanted, strict=False)]
        arrays.append(pa.array(columns[-1], pa.int64()))
        return pa.Table.from_arrays(arrays, schema=read_schema(wanted))

    def count(self, table: OnlineTable) -> int:
        with self._connection() as conn, self._table_errors(table.name):
            return int(conn.execute(f"SELECT count(*) FROM {quote(table.name)}").fetchone()[0])

    def count_present(self, table: OnlineTable, keys: pa.Table) -> int:
        distinct = conform_keys(table, keys).group_by(table.key_names).aggregate([])
        total = 0
        with self._connection() as conn, self._table_errors(table.name):
            for values, params in _key_chunks(conn, table, distinct):
                total += int(conn.execute(f"WITH {values} SELECT count(*) FROM k JOIN {quote(table.name)} AS t "
                                          f"ON {_on(table)}", params).fetchone()[0])
        return total

    def dump(self, table: OnlineTable) -> pa.Table:
        columns = _all_columns(table)
        sql = f"SELECT {', '.join(quote(c.name) for c in columns)} FROM {quote(table.name)}"
        with self._connection() as conn, self._table_errors(table.name):
            rows = conn.execute(sql).fetchall()
        values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
        data = pa.Table.from_arrays([array_from_plain(v, c.dtype) for v, c in zip(values, columns, strict=True)],
                                    schema=table.arrow_schema())
        return sort_by_keys(table, data)

    @contextmanager
    def _table_errors(self, name: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                raise OnlineTableMissing(name, f"the SQLite file {self.path}") from None
            raise


def _all_columns(table: OnlineTable) -> list[Column]:
    return [*table.join_keys, *table.features, Column(EVENT_TS, "Int64"), Column(CREATED_TS, "Int64")]


def _on(table: OnlineTable) -> str:
    return " AND ".join(f"t.{quote(c.name)} = k.k{i}" for i, c in enumerate(table.join_keys))


def _key_chunks(conn: sqlite3.Connection, table: OnlineTable, keys: pa.Table) -> Iterator[tuple[str, list[Any]]]:
    """``k(ord, k0, ...) AS (VALUES ...)`` with its parameters, one per chunk of keys that fits SQLite's limit
    of bound variables: one query per call for any realistic number of keys."""
    per_row = len(table.join_keys) + 1
    chunk = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // per_row)
    names = ", ".join(["ord", *(f"k{i}" for i in range(len(table.join_keys)))])
    key_values = [plain_values(keys.column(c.name), c.dtype) for c in table.join_keys]
    row_sql = "(" + ", ".join("?" * per_row) + ")"
    for start in range(0, keys.num_rows, chunk):
        stop = min(start + chunk, keys.num_rows)
        params: list[Any] = []
        for position, row in enumerate(zip(*(v[start:stop] for v in key_values), strict=True), start):
            params.append(position)
            params.extend(row)
        yield f"k({names}) AS (VALUES {', '.join([row_sql] * (stop - start))})", params


def _exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None
