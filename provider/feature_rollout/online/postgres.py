"""The PostgreSQL online store: one typed table per feature view version, written in bulk.

A write is one transaction: ``COPY`` (binary) into a temporary table shaped ``LIKE`` the target,
then one ``INSERT ... SELECT ... ON CONFLICT (keys) DO UPDATE ... WHERE`` that applies newer-wins,
so the server does the merge in one statement whatever the batch size. Tables live in the first
schema of the connection's ``search_path`` (``current_schema()``), and every name in SQL is a quoted
identifier. psycopg 3 is used directly: the bulk path needs ``COPY``, which SQLAlchemy does not wrap.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS, arrow_type
from feature_rollout.core.errors import OnlineStoreError, OnlineTableMissing
from feature_rollout.core.refs import validate_name
from feature_rollout.core.types import Array, parse_type
from feature_rollout.online.base import (
    Column,
    OnlineTable,
    check_shape,
    conform_batch,
    conform_keys,
    read_schema,
    requested_features,
    sort_by_keys,
    unavailable,
)
from feature_rollout.redaction import masked_url

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Second key of pg_advisory_xact_lock(int, int) while creating a table; the first is this package's
# class id (ASCII "fr"), so the lock space is apart from the registry's single bigint key.
_LOCK_CLASS = 0x6672
_STAGE = "_fr_stage"  # names of tables start with a letter, so this temporary table can meet none of them
_CHECK = ("Check that the PostgreSQL server is running and accepts connections, and the online store URL "
          "(online_store.url in feature_store.yaml, or the Airflow connection).")


@dataclass(frozen=True)
class _PgType:
    ddl: str  # in CREATE TABLE
    shown: str  # what format_type() prints, to compare an existing table


_PRIMITIVES = {
    "Bytes": _PgType("BYTEA", "bytea"),
    "String": _PgType("TEXT", "text"),
    "Bool": _PgType("BOOLEAN", "boolean"),
    "Int32": _PgType("INTEGER", "integer"),
    "Int64": _PgType("BIGINT", "bigint"),
    "Float32": _PgType("REAL", "real"),
    "Float64": _PgType("DOUBLE PRECISION", "double precision"),
    "UnixTimestamp": _PgType("TIMESTAMPTZ", "timestamp with time zone"),
}


def pg_type(dtype: str) -> _PgType:
    """The PostgreSQL type of a feature type: arrays are native arrays (``REAL[]``)."""
    parsed = parse_type(dtype)
    if isinstance(parsed, Array):
        base = _PRIMITIVES[parsed.base_type.name]
        return _PgType(f"{base.ddl}[]", f"{base.shown}[]")
    return _PRIMITIVES[parsed.name]


_DTYPE_OF_SHOWN = {t.shown: name for name, t in _PRIMITIVES.items()} | {
    f"{t.shown}[]": f"Array({name})" for name, t in _PRIMITIVES.items()
}


def libpq_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one: ``postgresql+psycopg://`` loses its ``+psycopg``; query
    parameters such as ``options=-csearch_path=...`` stay."""
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", url)


class PostgresOnlineStore:
    """The PostgreSQL online store.

    One connection per store object, opened at the first operation, in autocommit mode so that reads
    never leave a transaction open; writes and DDL run in explicit transactions. A lock serializes
    the connection's users, so one store object may be shared by threads.

    :param url: ``postgresql://`` or ``postgresql+psycopg://`` URL (libpq parameters in the query,
        such as ``sslmode`` or ``options=-csearch_path=features``, are kept).
    :param connect_timeout: seconds to wait for the server when connecting, unless the URL says.
    """

    kind = "postgres"

    def __init__(self, url: str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_SECONDS) -> None:
        self.url = url
        self._conninfo = libpq_url(url)
        query = dict(parse_qsl(urlsplit(self._conninfo).query))
        self._connect_args: dict[str, Any] = {} if "connect_timeout" in query else {"connect_timeout": connect_timeout}
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._schema = ""
        self._lock = threading.RLock()

    # --- connection ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self, table: str | None = None) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The connection (opened on first use, reopened after a failure), with errors made ours."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            try:
                yield conn
            except psycopg.errors.UndefinedTable:
                if table is None:
                    raise
                raise OnlineTableMissing(table, f"schema '{self._schema}' of {masked_url(self.url)}") from None
            except psycopg.OperationalError as err:
                if conn.broken or conn.closed:
                    conn.close()
                    self._conn = None
                    raise unavailable("PostgreSQL", self.url, err, _CHECK) from None
                raise

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_args)
        except psycopg.Error as err:  # OperationalError, or ProgrammingError for a malformed URL
            raise unavailable("PostgreSQL", self.url, err, _CHECK) from None
        row = conn.execute("SELECT current_schema()").fetchone()
        if row is None or row[0] is None:
            conn.close()
            raise OnlineStoreError(
                f"No schema of the search_path of {masked_url(self.url)} exists; create the schema, or set "
                "options=-csearch_path in the online store URL to one that exists."
            )
        self._schema = str(row[0])
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self._schema, name)

    # --- tables -------------------------------------------------------------------------------

    def create_table(self, table: OnlineTable) -> None:
        with self._connection() as conn, conn.transaction():
            # Two processes creating the same table at once: the second waits, then finds it and checks it.
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                         (_LOCK_CLASS, f"{self._schema}.{table.name}"))
            found = self._columns(conn, table.name)
            if found:
                check_shape(table, found, f"schema '{self._schema}' of the PostgreSQL online store")
                return
            columns = [sql.SQL("{} {} NOT NULL").format(sql.Identifier(c.name), sql.SQL(pg_type(c.dtype).ddl))
                       for c in table.join_keys]
            columns += [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(pg_type(c.dtype).ddl))
                        for c in table.features]
            columns += [sql.SQL("{} BIGINT NOT NULL").format(sql.Identifier(name)) for name in (EVENT_TS, CREATED_TS)]
            conn.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                self._ident(table.name), sql.SQL(", ").join(columns),
                sql.SQL(", ").join(map(sql.Identifier, table.key_names))))

    def _columns(self, conn: psycopg.Connection[tuple[Any, ...]], name: str) -> list[tuple[str, str]]:
        """The existing table's columns as ``(name, feature type)`` pairs (see :func:`check_shape`)."""
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), coalesce(a.attnum = ANY(i.indkey), false) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self._schema, name)).fetchall()
        found = []
        for column, shown, is_key in rows:
            dtype = _DTYPE_OF_SHOWN.get(shown, f"{shown} (not a feature type)")
            found.append((column, f"{dtype} (join key)" if is_key else dtype))
        return found

    def drop_table(self, name: str) -> None:
        validate_name(name, "online table")
        with self._connection() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(name)))

    def table_exists(self, name: str) -> bool:
        validate_name(name, "online table")
        with self._connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p'))",
                (self._schema, name)).fetchone()
            return bool(row and row[0])

    # --- rows ---------------------------------------------------------------------------------

    def write_batch(self, table: OnlineTable, batch: pa.Table | pa.RecordBatch) -> int:
        data = conform_batch(table, batch)
        if data.num_rows == 0:
            return 0
        with self._connection(table.name) as conn:
            statements = _write_statements(self._schema, table)
            merge = conn.info.server_version >= _MERGE_SINCE
            with conn.transaction(), conn.cursor() as cur:
                try:
                    if merge:
                        # MERGE, and COPY straight into an empty table, are only safe when no other writer adds
                        # the same keys meanwhile: the lock serializes writers of this table (mapped backfill
                        # chunks run in parallel) and lets readers through.
                        cur.execute(statements.lock, prepare=False)
                        if cur.execute(statements.is_empty, prepare=False).fetchone() == (True,):
                            # The first backfill of a new version: nothing to merge with.
                            with cur.copy(statements.copy_into_table) as copy:
                                for chunk in copy_binary(data, _all_columns(table)):
                                    copy.write(chunk)
                            return int(data.num_rows)
                    # prepare=False: the temporary table is a new relation every time
                    cur.execute(statements.stage, prepare=False)
                    with cur.copy(statements.copy) as copy:
                        for chunk in copy_binary(data, _all_columns(table)):
                            copy.write(chunk)
                    cur.execute(statements.merge if merge else statements.upsert, prepare=False)
                except (psycopg.errors.CardinalityViolation, psycopg.errors.UniqueViolation):
                    raise OnlineStoreError(
                        f"The batch for online table '{table.name}' has an entity key more than once; keep the "
                        "latest row per key (materialization does)."
                    ) from None
                return cur.rowcount

    def read(self, table: OnlineTable, keys: pa.Table, features: Sequence[str]) -> pa.Table:
        wanted = requested_features(table, features)
        key_data = conform_keys(table, keys)
        rows: list[tuple[Any, ...]] = []
        if key_data.num_rows:
            with self._connection(table.name) as conn:
                query = _read_statement(self._schema, table, tuple(c.name for c in wanted))
                rows = conn.execute(query, _key_lists(table, key_data)).fetchall()
        return pa.Table.from_arrays(_arrays(rows, [*wanted, Column(EVENT_TS, "Int64")]), schema=read_schema(wanted))

    def count(self, table: OnlineTable) -> int:
        with self._connection(table.name) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident(table.name))).fetchone()
            return int(row[0]) if row else 0

    def count_present(self, table: OnlineTable, keys: pa.Table) -> int:
        key_data = conform_keys(table, keys)
        if not key_data.num_rows:
            return 0
        with self._connection(table.name) as conn:
            query = sql.SQL("SELECT count(*) FROM (SELECT DISTINCT * FROM {}) AS k JOIN {} AS t ON {}").format(
                _unnest(table, ordinality=False), self._ident(table.name), _on(table))
            row = conn.execute(query, _key_lists(table, key_data)).fetchone()
            return int(row[0]) if row else 0

    def dump(self, table: OnlineTable) -> pa.Table:
        columns = _all_columns(table)
        with self._connection(table.name) as conn:
            rows = conn.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.Identifier(c.name) for c in columns), self._ident(table.name))).fetchall()
        return sort_by_keys(table, pa.Table.from_arrays(_arrays(rows, columns), schema=table.arrow_schema()))


def pg_values(column: pa.ChunkedArray, dtype: str) -> list[Any]:
    """Python values of a column for psycopg parameters (the keys of a read). Timestamps are built from integer
    microseconds here: Arrow's own conversion to time-zone-aware datetimes is several times slower."""
    parsed = parse_type(dtype)
    if parsed.name == "UnixTimestamp":
        return [None if v is None else _EPOCH + timedelta(microseconds=v) for v in column.cast(pa.int64()).to_pylist()]
    if parsed.name == "Array(UnixTimestamp)":
        return [None if v is None else [None if u is None else _EPOCH + timedelta(microseconds=u) for u in v]
                for v in column.cast(pa.list_(pa.int64())).to_pylist()]
    return column.to_pylist()  # type: ignore[no-any-return]


# --- COPY (FORMAT BINARY), built from Arrow buffers ------------------------------------------
# Formatting rows one by one in Python (to_pylist, then write_row) costs more than the server's
# whole upsert; here every column is encoded in a few vectorized passes and rows are joined by
# Arrow, so a batch costs about as much to send as its size in bytes.

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_ROWS_PER_CHUNK = 65_536
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: the origin of binary timestamps
_BIN = pa.large_binary()
_NULL_FIELD = pa.scalar(struct.pack(">i", -1), _BIN)
_NOTHING = pa.scalar(b"", _BIN)
# feature type -> (big-endian NumPy type of the value, element type OID inside arrays)
_FIXED_WIDTH = {"Bool": ("u1", 16), "Int32": (">i4", 23), "Int64": (">i8", 20), "Float32": (">f4", 700),
                "Float64": (">f8", 701), "UnixTimestamp": (">i8", 1184)}
_VARIABLE_WIDTH_OID = {"Bytes": 17, "String": 25}


def copy_binary(data: pa.Table, columns: Sequence[Column]) -> Iterator[bytes | memoryview]:
    """``data`` (columns as :meth:`OnlineTable.arrow_schema`) as the byte stream of ``COPY ... (FORMAT BINARY)``."""
    yield _COPY_HEADER
    field_count = pa.scalar(struct.pack(">h", len(columns)), _BIN)
    for start in range(0, data.num_rows, _COPY_ROWS_PER_CHUNK):
        part = data.slice(start, _COPY_ROWS_PER_CHUNK)
        fields = [_fields(part.column(c.name).combine_chunks(), c.dtype) for c in columns]
        rows = pc.binary_join_element_wise(field_count, *fields, _NOTHING)
        _, offsets_buffer, data_buffer = rows.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[rows.offset:rows.offset + len(rows) + 1]
        yield memoryview(data_buffer)[int(offsets[0]):int(offsets[-1])]
    yield _COPY_TRAILER


def _fields(values: pa.Array, dtype: str) -> pa.Array:
    """Each value as one field: its length (int32, -1 for null), then its binary form."""
    parsed = parse_type(dtype)
    if isinstance(parsed, Array):
        return _array_fields(values, parsed.base_type.name)
    return _scalar_fields(values, parsed.name)


def _scalar_fields(values: pa.Array, name: str) -> pa.Array:
    if name in _FIXED_WIDTH:
        value_type = np.dtype(_FIXED_WIDTH[name][0])
        if name == "Bool":
            plain = values.fill_null(False).cast(pa.uint8())
        elif name == "UnixTimestamp":
            plain = pc.subtract(values.cast(pa.int64()).fill_null(0), _PG_EPOCH_US)
        else:
            plain = values.fill_null(0)
        record = np.empty(len(values), dtype=[("length", ">i4"), ("value", value_type)])
        record["length"] = value_type.itemsize
        record["value"] = plain.to_numpy(zero_copy_only=False)
        encoded = _fixed_size(record)
    else:
        raw = values.cast(_BIN)
        lengths = pc.binary_length(raw).fill_null(0).to_numpy(zero_copy_only=False).astype(">i4")
        encoded = pc.binary_join_element_wise(_fixed_size(lengths), raw, _NOTHING)
    return pc.if_else(values.is_null(), _NULL_FIELD, encoded) if values.null_count else encoded


def _array_fields(values: pa.Array, base: str) -> pa.Array:
    """PostgreSQL's binary array: ndim, has-null flag, element OID, then (length, lower bound) of the one
    dimension and the elements as fields; an empty array is ndim 0 and nothing after the OID."""
    count = len(values)
    lengths = pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    elements = pc.list_flatten(values)  # null lists contribute no elements, as their length 0 says
    body = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), _scalar_fields(elements, base)), _NOTHING)
    null_before = np.zeros(len(elements) + 1, dtype=np.int64)
    np.cumsum(elements.is_null().to_numpy(zero_copy_only=False), out=null_before[1:])
    oid = _FIXED_WIDTH[base][1] if base in _FIXED_WIDTH else _VARIABLE_WIDTH_OID[base]
    header = np.empty(count, dtype=[(n, ">i4") for n in ("length", "ndim", "flags", "oid", "size", "lower")])
    header["length"] = 20 + pc.binary_length(body).to_numpy(zero_copy_only=False)
    header["ndim"] = 1
    header["flags"] = (null_before[offsets[1:]] - null_before[offsets[:-1]]) > 0
    header["oid"] = oid
    header["size"] = lengths
    header["lower"] = 1
    empty = np.empty(count, dtype=[(n, ">i4") for n in ("length", "ndim", "flags", "oid")])
    empty["length"], empty["ndim"], empty["flags"], empty["oid"] = 12, 0, 0, oid
    prefix = pc.if_else(pa.array(lengths == 0), _fixed_size(empty), _fixed_size(header))
    encoded = pc.binary_join_element_wise(prefix, body, _NOTHING)
    return pc.if_else(values.is_null(), _NULL_FIELD, encoded) if values.null_count else encoded


def _fixed_size(records: np.ndarray[Any, Any]) -> pa.Array:
    """A NumPy array's items as large_binary values of their bytes (no copy per item)."""
    width = records.dtype.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(records),
                                                [None, pa.py_buffer(records.tobytes())]).cast(_BIN)


def _key_lists(table: OnlineTable, keys: pa.Table) -> list[list[Any]]:
    return [pg_values(keys.column(c.name), c.dtype) for c in table.join_keys]


def _all_columns(table: OnlineTable) -> list[Column]:
    return [*table.join_keys, *table.features, Column(EVENT_TS, "Int64"), Column(CREATED_TS, "Int64")]


def _arrays(rows: Sequence[tuple[Any, ...]], columns: Sequence[Column]) -> list[pa.Array]:
    values: Sequence[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    # Arrow converts aware datetimes (TIMESTAMPTZ) to UTC and float to float32 itself.
    return [pa.array(v, arrow_type(c.dtype)) for v, c in zip(values, columns, strict=True)]


@dataclass(frozen=True)
class _WriteStatements:
    stage: sql.Composed
    copy: sql.Composed
    lock: sql.Composed
    is_empty: sql.Composed
    copy_into_table: sql.Composed
    merge: sql.Composed
    upsert: sql.Composed


_MERGE_SINCE = 150000  # PostgreSQL 15


@lru_cache(maxsize=256)
def _write_statements(schema: str, table: OnlineTable) -> _WriteStatements:
    target = sql.Identifier(schema, table.name)
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in _all_columns(table))
    updated = [c.name for c in _all_columns(table)[len(table.join_keys):]]
    event, created = sql.Identifier(EVENT_TS), sql.Identifier(CREATED_TS)
    return _WriteStatements(
        lock=sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target),
        is_empty=sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(target),
        copy_into_table=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names),
        merge=sql.SQL(
            "MERGE INTO {target} AS t USING {stage} AS s ON {on} "
            # newer-wins: an older or equal (event, created) pair never overwrites
            "WHEN MATCHED AND (s.{event}, s.{created}) > (t.{event}, t.{created}) THEN UPDATE SET {updates} "
            "WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        ).format(
            target=target, stage=sql.Identifier(_STAGE), names=names, event=event, created=created,
            on=sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in table.key_names),
            updates=sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(n)) for n in updated),
            values=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c.name)) for c in _all_columns(table)),
        ),
        stage=sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(sql.Identifier(_STAGE), target),
        copy=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(_STAGE), names),
        upsert=sql.SQL(
            "INSERT INTO {target} AS t ({names}) SELECT {names} FROM {stage} "
            "ON CONFLICT ({keys}) DO UPDATE SET {updates} "
            # newer-wins: an older or equal (event, created) pair never overwrites
            "WHERE (EXCLUDED.{event}, EXCLUDED.{created}) > (t.{event}, t.{created})"
        ).format(
            target=target, names=names, stage=sql.Identifier(_STAGE),
            keys=sql.SQL(", ").join(map(sql.Identifier, table.key_names)),
            updates=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in updated),
            event=sql.Identifier(EVENT_TS), created=sql.Identifier(CREATED_TS),
        ),
    )


@lru_cache(maxsize=1024)
def _read_statement(schema: str, table: OnlineTable, features: tuple[str, ...]) -> sql.Composed:
    """One query for any number of keys: the key arrays unnested in order, left-joined to the table."""
    selected = [sql.SQL("t.{}").format(sql.Identifier(name)) for name in (*features, EVENT_TS)]
    return sql.SQL("SELECT {} FROM {} LEFT JOIN {} AS t ON {} ORDER BY k.ord").format(
        sql.SQL(", ").join(selected), _unnest(table, ordinality=True), sql.Identifier(schema, table.name), _on(table))


def _unnest(table: OnlineTable, *, ordinality: bool) -> sql.Composed:
    arrays = [sql.SQL("%s::{}").format(sql.SQL(pg_type(c.dtype).ddl + "[]")) for c in table.join_keys]
    names = [sql.Identifier(f"k{i}") for i in range(len(table.join_keys))]
    if ordinality:
        return sql.SQL("unnest({}) WITH ORDINALITY AS k({}, ord)").format(
            sql.SQL(", ").join(arrays), sql.SQL(", ").join(names))
    return sql.SQL("unnest({}) AS k({})").format(sql.SQL(", ").join(arrays), sql.SQL(", ").join(names))


def _on(table: OnlineTable) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("t.{} = k.{}").format(sql.Identifier(c.name), sql.Identifier(f"k{i}"))
        for i, c in enumerate(table.join_keys))

