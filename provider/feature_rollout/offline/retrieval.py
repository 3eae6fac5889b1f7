"""Point-in-time joins and the source reads of materialization and the gates, in DuckDB (DESIGN §9, §10).

Sources are streamed into DuckDB as Arrow record batches (never whole tables in pandas); DuckDB
runs with a memory limit and spills to a temporary directory.

Which source row counts, everywhere in this module:

- A row whose event time or any join key is null never counts (null keys match nothing).
- Among rows of one entity key with the same event time, the winner is the one with the latest
  created timestamp (a missing created timestamp, or a source without a created column, counts
  as 0, i.e. 1970-01-01, which is also what online tables store). Remaining ties go to the row
  with the greatest feature values, compared feature by feature in declared order: a value beats
  a null; strings and bytes compare bytewise, lists element by element (a shorter prefix is
  smaller, a null element is greater than any value), NaN is greater than any number. Every
  declared feature takes part, whichever features a read selects, so that every read of a view,
  and materialization, sees the same row.
- Historical retrieval: for a spine row at ``t``, rows with ``t - ttl <= event_ts <= t`` (both
  inclusive; no lower bound when ttl is ``None`` or 0); the latest event time wins. A spine row
  whose ``event_timestamp`` or join key is null gets nulls.
- Materialization: rows with ``start <= event_ts < end``; the latest event time per key wins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS, TIMESTAMP
from feature_rollout.core.errors import (
    EntityKeyError,
    InvalidDefinitionError,
    InvalidReferenceError,
    SchemaMismatchError,
)
from feature_rollout.offline.connection import duckdb_connection, quote
from feature_rollout.offline.sources import TypedColumn, ViewSource, from_micros, to_micros
from feature_rollout.offline.spine import EVENT_TIMESTAMP, normalize_spine
from feature_rollout.online.base import OnlineTable

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FeatureRead",
    "count_rows",
    "entity_keys",
    "historical_features",
    "latest_rows",
    "max_event_time",
    "min_event_time",
    "sample_spine",
]

_ROW = "_row"
_SPINE_TS = "_spine_ts"
_BEST = "_best"


# --- historical retrieval -------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRead:
    """What one view version contributes to a historical read.

    :param view_spec: the resolved spec of the version read (its source, its schema).
    :param features: ``(feature name, output column name)`` pairs, in output order.
    :param ttl_seconds: how far back a feature row counts for a spine row; ``None`` or 0: no limit.
    """

    view_spec: Mapping[str, Any]
    features: tuple[tuple[str, str], ...]
    ttl_seconds: float | None


def historical_features(spine: pd.DataFrame | pa.Table, reads: Sequence[FeatureRead], repo_path: Path) -> pa.Table:
    """Point-in-time correct feature values for every row of ``spine``.

    :param spine: entity rows: join keys and a timezone-aware ``event_timestamp``
        (anything :func:`~feature_rollout.offline.spine.normalize_spine` accepts).
    :param reads: the view versions and features to read.
    :param repo_path: the feature repo (source paths are relative to it).
    :return: the normalized spine's columns, unchanged and in order, then each read's output
        columns (declared types): exactly one row per spine row, in spine order.
    :raises NaiveTimestampError: the spine's ``event_timestamp`` has no time zone.
    :raises EntityKeyError: the spine lacks ``event_timestamp`` or a read's join key, or a join key
        column has a type that cannot match the view's.
    :raises InvalidReferenceError: a read names a feature its view does not have, or two output
        columns (or an output and a spine column) share a name.
    :raises SourceNotFoundError: a source path matches no file.
    :raises SchemaMismatchError: a source does not have the declared columns and types.
    """
    table = normalize_spine(spine)
    _check_output_names(table, reads)
    sources = [ViewSource.resolve(read.view_spec, repo_path) for read in reads]
    for read, source in zip(reads, sources, strict=True):
        _check_read(table, read, source)
    if not reads:
        return table

    micros = pc.min_max(table.column(EVENT_TIMESTAMP).cast(pa.int64())).as_py()
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    with duckdb_connection() as connection:
        for index, (read, source) in enumerate(zip(reads, sources, strict=True)):
            if not read.features:
                continue
            joined = _point_in_time(connection, index, table, rows, read, source, micros["min"], micros["max"])
            for position, (feature, output) in enumerate(read.features):
                column = joined.column(f"_o{position}").cast(source.feature(feature).type)
                table = table.append_column(pa.field(output, column.type), column)
    return table


def _check_output_names(table: pa.Table, reads: Sequence[FeatureRead]) -> None:
    seen = {name: "the entity rows" for name in table.column_names}
    for read in reads:
        view = read.view_spec.get("name", "?")
        for feature, output in read.features:
            if output in seen:
                raise InvalidReferenceError(
                    f"Output column '{output}' (feature '{feature}' of '{view}') is also a column of {seen[output]}. "
                    "Request it under another name (full feature names, e.g. 'view__feature'), or drop the "
                    "other column."
                )
            seen[output] = f"the read of '{view}'"


def _check_read(table: pa.Table, read: FeatureRead, source: ViewSource) -> None:
    for feature, _ in read.features:
        if feature not in source.feature_names:
            raise InvalidReferenceError(
                f"Feature view '{source.view_name}' has no feature '{feature}' (it has: "
                f"{', '.join(source.feature_names)}). Fix the reference."
            )
    if read.ttl_seconds is not None and read.ttl_seconds < 0:
        raise InvalidDefinitionError(f"The ttl of '{source.view_name}' is negative ({read.ttl_seconds} s).")
    for key in source.keys:
        if key.name not in table.column_names:
            raise EntityKeyError(
                f"The entity rows lack join key '{key.name}' of feature view '{source.view_name}' (columns: "
                f"{', '.join(table.column_names)}). Add a '{key.name}' column to the entity rows."
            )
        found = table.schema.field(key.name).type
        if not _joinable(found, key.type):
            raise EntityKeyError(
                f"Join key '{key.name}' is {found} in the entity rows but {key.type} in feature view "
                f"'{source.view_name}'; values of these types never match. Cast the '{key.name}' column to {key.type}."
            )


def _joinable(left: pa.DataType, right: pa.DataType) -> bool:
    t = pa.types

    def kind(arrow: pa.DataType) -> str:
        if t.is_dictionary(arrow):
            return kind(arrow.value_type)
        if t.is_integer(arrow) or t.is_floating(arrow) or t.is_decimal(arrow):
            return "number"
        if t.is_string(arrow) or t.is_large_string(arrow) or t.is_string_view(arrow):
            return "string"
        if t.is_binary(arrow) or t.is_large_binary(arrow) or t.is_binary_view(arrow) or t.is_fixed_size_binary(arrow):
            return "binary"
        if t.is_null(arrow):
            return "null"
        return str(arrow)

    return "null" in (kind(left), kind(right)) or kind(left) == kind(right)


def _point_in_time(connection: duckdb.DuckDBPyConnection, index: int, table: pa.Table, rows: pa.Array,
                   read: FeatureRead, source: ViewSource, min_us: int | None, max_us: int | None) -> pa.Table:
    """One read's output columns (``_o0``, ``_o1``, ...) for every spine row, in spine order.

    In two steps, so that the tie rule costs little: an ASOF JOIN on (keys, event time) alone finds,
    per spine row, the event time that counts; only the source rows at those (key, event time) pairs
    are then reduced to one by the tie rule and joined back.
    """
    spine_name, reader_name, source_name = f"spine_{index}", f"reader_{index}", f"source_{index}"
    keys = source.key_names
    spine_keys = pa.table([rows, *(table.column(k) for k in keys), table.column(EVENT_TIMESTAMP)],
                          names=[_ROW, *keys, _SPINE_TS])
    ttl_us = round(read.ttl_seconds * 1_000_000) if read.ttl_seconds else None
    # Only source rows that can count for some spine row: [min - ttl, max] (both inclusive).
    lower_us = None if min_us is None or ttl_us is None else min_us - ttl_us
    upper_us = None if max_us is None else max_us + 1
    columns = [*keys, *source.feature_names, EVENT_TS, *([CREATED_TS] if source.has_created else [])]

    q = quote
    key_list = ", ".join(q(k) for k in keys)
    matched = f"f.{q(EVENT_TS)}"
    if ttl_us is not None:
        matched = f"CASE WHEN epoch_us({matched}) >= epoch_us(s.{q(_SPINE_TS)}) - {ttl_us} THEN {matched} END"
    on_asof = " AND ".join([*(f"s.{q(k)} = f.{q(k)}" for k in keys), f"s.{q(_SPINE_TS)} >= f.{q(EVENT_TS)}"])
    on_pair = " AND ".join(f"{{0}}.{q(c)} = {{1}}.{q(c)}" for c in (*keys, EVENT_TS))
    outputs = ", ".join(
        f"{_field(f'b.{q(_BEST)}', f'f{source.feature_names.index(feature)}')} AS {q(f'_o{position}')}"
        for position, (feature, _) in enumerate(read.features)
    )
    sql = (
        # 1. per spine row, the event time that counts (null: none within ttl, or no match at all);
        #    materialized, as it is read twice and must not be computed twice
        f"WITH m AS MATERIALIZED (SELECT s.{q(_ROW)}, {', '.join(f's.{q(k)}' for k in keys)}, "
        f"  {matched} AS {q(EVENT_TS)} "
        f"  FROM {q(spine_name)} AS s ASOF LEFT JOIN "
        f"  (SELECT {key_list}, {q(EVENT_TS)} FROM {q(source_name)} WHERE {_not_null(source)}) AS f ON {on_asof}), "
        # 2. the winning row of each (key, event time) that some spine row needs
        f"b AS (SELECT {', '.join(f'r.{q(c)}' for c in (*keys, EVENT_TS))}, {_best_row(source, 'r.')} AS {q(_BEST)} "
        f"  FROM {q(source_name)} AS r SEMI JOIN (SELECT DISTINCT {key_list}, {q(EVENT_TS)} FROM m "
        f"  WHERE {q(EVENT_TS)} IS NOT NULL) AS p ON {on_pair.format('r', 'p')} "
        f"  GROUP BY {', '.join(f'r.{q(c)}' for c in (*keys, EVENT_TS))}) "
        f"SELECT m.{q(_ROW)}, {outputs} FROM m LEFT JOIN b ON {on_pair.format('m', 'b')} ORDER BY m.{q(_ROW)}"
    )
    scanner = source.scanner(columns, lower_us=lower_us, upper_us=upper_us)
    with _registered(connection, spine_name, spine_keys), _reading(source):
        with _registered(connection, reader_name, scanner.to_reader()):
            # Materialized (DuckDB spills it under its memory limit) because it is read twice.
            connection.execute(f"CREATE TEMP TABLE {q(source_name)} AS SELECT * FROM {q(reader_name)}")
        try:
            joined = _arrow(connection.sql(sql))
        finally:
            connection.execute(f"DROP TABLE {q(source_name)}")
    # The guarantee Feast's file store broke: exactly the spine's rows, in the spine's order.
    if joined.num_rows != table.num_rows or not joined.column(_ROW).equals(pa.chunked_array([rows])):
        raise RuntimeError(
            f"Point-in-time join of '{source.view_name}' returned {joined.num_rows} rows for a spine of "
            f"{table.num_rows} rows (or out of order); this is a bug, please report it."
        )
    return joined


def _best_row(source: ViewSource, prefix: str = "", *, latest: bool = False) -> str:
    """SQL aggregate: the winning row of a group as a struct (``t`` event time in µs when ``latest``, ``c``
    created time in µs, ``f0``, ``f1``, ... the features).

    The maximum of a struct compares its fields in order, so the struct *is* the tie rule of the
    module docstring: latest event time, then latest created time, then per feature: a value beats
    a null (``vN``), then the greater value (inside lists DuckDB orders nulls last).
    """
    def q(column: str) -> str:
        return prefix + quote(column)

    fields = [f"'t': epoch_us({q(EVENT_TS)})"] if latest else []
    created = f"coalesce(epoch_us({q(CREATED_TS)}), 0)" if source.has_created else "0"
    fields.append(f"'c': {created}")
    for index, feature in enumerate(source.feature_names):
        fields += [f"'v{index}': {q(feature)} IS NOT NULL", f"'f{index}': {q(feature)}"]
    return "max({" + ", ".join(fields) + "})"


def _not_null(source: ViewSource) -> str:
    return " AND ".join(f"{quote(c)} IS NOT NULL" for c in (*source.key_names, EVENT_TS))


def _field(struct: str, name: str) -> str:
    return f"struct_extract({struct}, '{name}')"


# --- materialization and gates --------------------------------------------------------------


def latest_rows(view_spec: Mapping[str, Any], repo_path: Path, start: datetime, end: datetime, *,
                batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """The latest source row per entity key among rows with ``start <= event_ts < end``.

    Streams: batches are produced as they are read, sorted by the join keys, so the same data and
    interval always give the same batches.

    :param view_spec: the resolved spec of the version to materialize (join keys need a dtype).
    :param repo_path: the feature repo.
    :param start: the inclusive start of the interval (timezone-aware).
    :param end: the exclusive end of the interval (timezone-aware).
    :param batch_rows: the most rows one batch holds.
    :return: record batches with the schema of the version's online table
        (:meth:`~feature_rollout.online.base.OnlineTable.arrow_schema`): ``_event_ts`` and
        ``_created_ts`` are UTC microseconds, ``_created_ts`` is 0 without a created column.
    :raises NaiveTimestampError: ``start`` or ``end`` has no time zone.
    :raises SourceNotFoundError: the source path matches no file.
    :raises SchemaMismatchError: the source does not have the declared columns and types.
    """
    start_us, end_us = to_micros(start, "start"), to_micros(end, "end")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}.")
    schema = OnlineTable.from_version_spec(str(view_spec["name"]), view_spec).arrow_schema()
    source = ViewSource.resolve(view_spec, repo_path)
    return _latest_batches(source, schema, start_us, end_us, batch_rows)


def _latest_batches(source: ViewSource, schema: pa.Schema, start_us: int, end_us: int,
                    batch_rows: int) -> Iterator[pa.RecordBatch]:
    if start_us >= end_us:
        return
    q = quote
    keys = ", ".join(q(k) for k in source.key_names)
    best = q(_BEST)
    features = "".join(f"{_field(best, f'f{i}')} AS {q(f)}, " for i, f in enumerate(source.feature_names))
    sql = (
        f"SELECT {keys}, {features}{_field(best, 't')} AS {q(EVENT_TS)}, {_field(best, 'c')} AS {q(CREATED_TS)} "
        f"FROM (SELECT {keys}, {_best_row(source, latest=True)} AS {best} FROM source WHERE {_not_null(source)} "
        f"GROUP BY {keys}) ORDER BY {keys}"
    )
    columns = [*source.key_names, *source.feature_names, EVENT_TS, *([CREATED_TS] if source.has_created else [])]
    with duckdb_connection() as connection, _reading(source), _registered(
        connection, "source", source.scanner(columns, lower_us=start_us, upper_us=end_us).to_reader()
    ):
        reader = connection.sql(sql).to_arrow_reader(batch_size=batch_rows)
        try:
            for batch in reader:
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows).cast(schema)
        finally:
            # Stopped early (the caller closed the generator): end the query before the connection.
            reader.close()


def count_rows(view_spec: Mapping[str, Any], repo_path: Path, start: datetime, end: datetime) -> int:
    """How many source rows have ``start <= event_ts < end`` (all of them, whatever their keys).

    :raises NaiveTimestampError: ``start`` or ``end`` has no time zone.
    :raises SourceNotFoundError: the source path matches no file.
    :raises SchemaMismatchError: the source does not have the declared columns and types.
    """
    start_us, end_us = to_micros(start, "start"), to_micros(end, "end")
    source = ViewSource.resolve(view_spec, repo_path)
    if start_us >= end_us:
        return 0
    return source.count(lower_us=start_us, upper_us=end_us)


def entity_keys(view_spec: Mapping[str, Any], repo_path: Path, start: datetime, end: datetime) -> pa.Table:
    """The distinct join-key tuples (no null in them) of source rows with ``start <= event_ts < end``.

    :return: one column per join key (declared types), sorted by the keys.
    :raises NaiveTimestampError: ``start`` or ``end`` has no time zone.
    """
    start_us, end_us = to_micros(start, "start"), to_micros(end, "end")
    source = ViewSource.resolve(view_spec, repo_path)
    schema = _schema(source.keys)
    if start_us >= end_us:
        return schema.empty_table()
    keys = ", ".join(quote(k) for k in source.key_names)
    not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in source.key_names)
    sql = f"SELECT DISTINCT {keys} FROM source WHERE {not_null} AND {quote(EVENT_TS)} IS NOT NULL ORDER BY {keys}"
    scanner = source.scanner([*source.key_names, EVENT_TS], lower_us=start_us, upper_us=end_us)
    with duckdb_connection() as connection, _reading(source), _registered(connection, "source", scanner.to_reader()):
        return _arrow(connection.sql(sql)).cast(schema)


def min_event_time(view_spec: Mapping[str, Any], repo_path: Path) -> datetime | None:
    """The earliest event time in the source (UTC), or ``None`` when it has no row with one."""
    return _event_time_bound(view_spec, repo_path, "min")


def max_event_time(view_spec: Mapping[str, Any], repo_path: Path) -> datetime | None:
    """The latest event time in the source (UTC), or ``None`` when it has no row with one."""
    return _event_time_bound(view_spec, repo_path, "max")


def _event_time_bound(view_spec: Mapping[str, Any], repo_path: Path, aggregate: str) -> datetime | None:
    source = ViewSource.resolve(view_spec, repo_path)
    with duckdb_connection() as connection, _reading(source), \
            _registered(connection, "source", source.scanner([EVENT_TS]).to_reader()):
        rows = connection.sql(f"SELECT epoch_us({aggregate}({quote(EVENT_TS)})) FROM source").fetchall()
    return None if rows[0][0] is None else from_micros(int(rows[0][0]))


def sample_spine(view_spec: Mapping[str, Any], repo_path: Path, *, size: int, seed: int,
                 start: datetime | None = None, end: datetime | None = None) -> pa.Table:
    """A deterministic sample of ``(join keys, event_timestamp)`` pairs of the source, for a parity spine.

    Each distinct pair (no null key) with ``start <= event_ts < end`` gets a pseudo-random rank,
    the MD5 of the seed and the pair; the ``size`` lowest ranks are kept and sorted by
    ``event_timestamp`` then the keys. The same data, ``seed``, ``size`` and window always give the
    same table, and a larger ``size`` gives a superset.

    :param size: the most rows returned.
    :param seed: changes which rows are drawn.
    :param start: inclusive start of the window (timezone-aware), or ``None``.
    :param end: exclusive end of the window (timezone-aware), or ``None``.
    :return: the join keys (declared types) and ``event_timestamp`` (``timestamp[us, tz=UTC]``).
    :raises NaiveTimestampError: ``start`` or ``end`` has no time zone.
    """
    start_us = None if start is None else to_micros(start, "start")
    end_us = None if end is None else to_micros(end, "end")
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}.")
    source = ViewSource.resolve(view_spec, repo_path)
    schema = _schema((*source.keys, TypedColumn(EVENT_TIMESTAMP, TIMESTAMP)))
    if size == 0 or (start_us is not None and end_us is not None and start_us >= end_us):
        return schema.empty_table()
    q = quote
    keys = [q(k) for k in source.key_names]
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in (*keys, q(EVENT_TS)))
    text = ", ".join([*(f"CAST({k} AS VARCHAR)" for k in keys), f"CAST(epoch_us({q(EVENT_TS)}) AS VARCHAR)"])
    sql = (
        f"SELECT {', '.join(keys)}, {q(EVENT_TS)} AS {q(EVENT_TIMESTAMP)} FROM ("
        f"  SELECT {', '.join(keys)}, {q(EVENT_TS)} FROM (SELECT DISTINCT {', '.join(keys)}, {q(EVENT_TS)} "
        f"    FROM source WHERE {not_null})"
        f"  ORDER BY md5_number(concat_ws('|', $seed, {text})), {', '.join(keys)}, {q(EVENT_TS)} LIMIT $size"
        f") ORDER BY {q(EVENT_TIMESTAMP)}, {', '.join(keys)}"
    )
    scanner = source.scanner([*source.key_names, EVENT_TS], lower_us=start_us, upper_us=end_us)
    with duckdb_connection() as connection, _reading(source), _registered(connection, "source", scanner.to_reader()):
        return _arrow(connection.sql(sql, params={"seed": str(seed), "size": size})).cast(schema)


# --- plumbing -------------------------------------------------------------------------------


def _schema(columns: Sequence[TypedColumn]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type) for c in columns])


def _arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    table = relation.to_arrow_table()
    assert table is not None
    return table


@contextmanager
def _registered(connection: duckdb.DuckDBPyConnection, name: str, data: Any) -> Iterator[None]:
    connection.register(name, data)
    try:
        yield
    finally:
        connection.unregister(name)


@contextmanager
def _reading(source: ViewSource) -> Iterator[None]:
    """Turn a value that does not fit its declared type (found while reading) into a SchemaMismatchError."""
    try:
        yield
    except (pa.ArrowInvalid, duckdb.Error) as err:
        message = str(err)
        from_the_source = isinstance(err, pa.ArrowInvalid) or "reading the stream registered as" in message
        if not from_the_source or not any(hint in message for hint in _CAST_FAILURES):
            raise
        raise SchemaMismatchError(
            f"A value in the source of feature view '{source.view_name}' does not fit its declared type: "
            f"{message.strip()}. Fix the data, or declare a type that holds it."
        ) from err


_CAST_FAILURES = ("truncated", "out of bounds", "not in range", "would lose", "overflow")
