"""The online store protocol: one versioned table per feature view version (DESIGN §9).

Every store keeps, per entity key, the latest materialized values of a version's features and the
event time and created time of the row they came from. Writes are *newer-wins* upserts: a row
replaces the stored one only when ``(_event_ts, _created_ts)`` is strictly greater, so writing an
interval twice, overlapping intervals, or intervals out of order all give the same table.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS, TIMESTAMP, arrow_type
from feature_rollout.core.errors import EntityKeyError, OnlineStoreError, OnlineStoreUnavailableError
from feature_rollout.core.refs import validate_name
from feature_rollout.core.types import Array, parse_type
from feature_rollout.redaction import masked_url, redact


@dataclass(frozen=True)
class Column:
    """A typed column: ``dtype`` is a feature type name such as ``"Int64"`` or ``"Array(Float32)"``."""

    name: str
    dtype: str


@dataclass(frozen=True)
class OnlineTable:
    """The shape of one version's online table."""

    name: str
    join_keys: tuple[Column, ...]
    features: tuple[Column, ...]

    def __post_init__(self) -> None:
        # Names end up in SQL and Redis keys: validate again here, whatever the caller did.
        validate_name(self.name, "online table")
        for column in (*self.join_keys, *self.features):
            validate_name(column.name, f"column of online table {self.name}")
        if not self.join_keys:
            raise ValueError(f"Online table {self.name} needs at least one join key.")

    @property
    def key_names(self) -> list[str]:
        return [c.name for c in self.join_keys]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    def arrow_schema(self) -> pa.Schema:
        """Join keys, features, then ``_event_ts`` and ``_created_ts`` (int64 UTC microseconds)."""
        return pa.schema(
            [pa.field(c.name, arrow_type(c.dtype)) for c in (*self.join_keys, *self.features)]
            + [pa.field(EVENT_TS, pa.int64()), pa.field(CREATED_TS, pa.int64())]
        )

    @classmethod
    def from_version_spec(cls, table_name: str, spec: Mapping[str, Any]) -> OnlineTable:
        """The table of a resolved view snapshot (``feature_view_versions.spec_json``)."""
        keys = tuple(Column(k["name"], k["dtype"]) for k in spec["join_keys"])
        missing = [c.name for c in keys if not c.dtype]
        if missing:
            raise ValueError(f"join key(s) {missing} of {table_name} have no type")
        return cls(table_name, keys, tuple(Column(f["name"], f["dtype"]) for f in spec["features"]))


@runtime_checkable
class OnlineStore(Protocol):
    """What materialization, online reads and gates need from a store."""

    #: "sqlite", "postgres" or "redis"
    kind: str

    def create_table(self, table: OnlineTable) -> None:
        """Create ``table`` if it does not exist (idempotent). An existing table of another shape is an
        :class:`~feature_rollout.core.errors.OnlineStoreError`."""

    def drop_table(self, name: str) -> None:
        """Drop the table and all its rows (idempotent)."""

    def table_exists(self, name: str) -> bool: ...

    def write_batch(self, table: OnlineTable, batch: pa.Table | pa.RecordBatch) -> int:
        """Newer-wins upsert of ``batch`` (columns as :meth:`OnlineTable.arrow_schema`, keys unique within
        the batch); commits before returning; returns how many rows were inserted or replaced."""

    def read(self, table: OnlineTable, keys: pa.Table, features: Sequence[str]) -> pa.Table:
        """One row per row of ``keys`` (columns = the join keys), in order: the requested features and
        ``_event_ts``; keys without a row give nulls."""

    def count(self, table: OnlineTable) -> int:
        """Number of entity keys stored."""

    def count_present(self, table: OnlineTable, keys: pa.Table) -> int:
        """How many of the (distinct) ``keys`` have a row."""

    def dump(self, table: OnlineTable) -> pa.Table:
        """Every row (schema :meth:`OnlineTable.arrow_schema`), sorted by the join keys."""

    def close(self) -> None: ...


# --- shared by the stores ---------------------------------------------------------------------
# What every store does the same way lives here once (STYLE 10): checking a batch against the
# table, the shape check of create_table, the JSON text of arrays (SQLite, Redis) and URL masking.


def conform_batch(table: OnlineTable, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """``batch`` with exactly the columns of ``table.arrow_schema()``, in that order and of those types.

    Null join keys or bookkeeping timestamps are refused: SQLite would turn a null ``INTEGER PRIMARY
    KEY`` into a fresh rowid, and a row without event time cannot take part in newer-wins.
    """
    schema = table.arrow_schema()
    data = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    missing = [name for name in schema.names if name not in data.column_names]
    if missing:
        raise OnlineStoreError(
            f"The batch for online table '{table.name}' lacks column(s) {', '.join(missing)}; a batch needs the "
            f"columns {', '.join(schema.names)}."
        )
    data = data.select(schema.names)
    if not data.schema.equals(schema):
        try:
            data = data.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
            raise OnlineStoreError(
                f"The batch for online table '{table.name}' does not match its types: {err}. Expected {schema}."
            ) from None
    null_keys = [name for name in table.key_names if data.column(name).null_count]
    if null_keys:
        raise EntityKeyError(
            f"The batch for online table '{table.name}' has null join key values in {', '.join(null_keys)}; "
            "every row needs a complete entity key."
        )
    null_times = [name for name in (EVENT_TS, CREATED_TS) if data.column(name).null_count]
    if null_times:
        raise OnlineStoreError(
            f"The batch for online table '{table.name}' has nulls in {', '.join(null_times)}; every row needs "
            "its event and created time (int64 UTC microseconds)."
        )
    return data


def conform_keys(table: OnlineTable, keys: pa.Table) -> pa.Table:
    """The join key columns of ``keys``, cast to the table's key types (other columns are ignored)."""
    missing = [name for name in table.key_names if name not in keys.column_names]
    if missing:
        raise EntityKeyError(
            f"The entity keys for online table '{table.name}' lack the join key column(s) {', '.join(missing)}; "
            f"pass columns {', '.join(table.key_names)}."
        )
    selected = keys.select(table.key_names)
    schema = pa.schema([pa.field(c.name, arrow_type(c.dtype)) for c in table.join_keys])
    if selected.schema.equals(schema):
        return selected
    try:
        return selected.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise EntityKeyError(f"The entity keys for online table '{table.name}' do not match {schema}: {err}") from None


def requested_features(table: OnlineTable, features: Sequence[str]) -> list[Column]:
    """The columns of ``features`` in the order asked; an unknown name is an error that lists the known ones."""
    by_name = {c.name: c for c in table.features}
    unknown = [name for name in features if name not in by_name]
    if unknown:
        raise OnlineStoreError(
            f"The online table '{table.name}' has no feature(s) {', '.join(unknown)}; it has "
            f"{', '.join(by_name) or 'none'}."
        )
    return [by_name[name] for name in features]


def read_schema(columns: Sequence[Column]) -> pa.Schema:
    """The schema of :meth:`OnlineStore.read` results: the requested features, then ``_event_ts``."""
    return pa.schema([pa.field(c.name, arrow_type(c.dtype)) for c in columns] + [pa.field(EVENT_TS, pa.int64())])


def sort_by_keys(table: OnlineTable, data: pa.Table) -> pa.Table:
    """Rows in join key order, sorted by Arrow so that every store (and every collation) agrees."""
    return data.sort_by([(name, "ascending") for name in table.key_names])


# --- shapes -----------------------------------------------------------------------------------


def shape_json(table: OnlineTable) -> str:
    """The table's shape as JSON (kept by SQLite in a catalog table and by Redis in a marker key)."""
    return json.dumps({"join_keys": [[c.name, c.dtype] for c in table.join_keys],
                       "features": [[c.name, c.dtype] for c in table.features]}, separators=(",", ":"))


def shape_columns(table: OnlineTable) -> list[tuple[str, str]]:
    """``(column, type)`` pairs that describe a shape; join keys say so in their type."""
    return ([(c.name, f"{c.dtype} (join key)") for c in table.join_keys] + [(c.name, c.dtype) for c in table.features]
            + [(EVENT_TS, "Int64"), (CREATED_TS, "Int64")])


def shape_columns_from_json(text: str | bytes) -> list[tuple[str, str]]:
    """The inverse of :func:`shape_json`, as :func:`shape_columns` pairs."""
    shape = json.loads(text)
    return ([(name, f"{dtype} (join key)") for name, dtype in shape["join_keys"]]
            + [(name, dtype) for name, dtype in shape["features"]] + [(EVENT_TS, "Int64"), (CREATED_TS, "Int64")])


def check_shape(table: OnlineTable, found: Sequence[tuple[str, str]], where: str) -> None:
    """Raise :class:`OnlineStoreError` when the existing table (``found`` pairs) differs from ``table``."""
    wanted = dict(shape_columns(table))
    existing = dict(found)
    differences = []
    missing = [name for name in wanted if name not in existing]
    extra = [name for name in existing if name not in wanted]
    if missing:
        differences.append(f"it lacks {', '.join(f'{n} {wanted[n]}' for n in missing)}")
    if extra:
        differences.append(f"it has {', '.join(f'{n} {existing[n]}' for n in extra)} in addition")
    differences += [f"its {name} is {existing[name]}, not {wanted[name]}"
                    for name in wanted if name in existing and existing[name] != wanted[name]]
    if differences:
        raise OnlineStoreError(
            f"The online table '{table.name}' already exists in {where} with another shape: {'; '.join(differences)}. "
            "A version's online table never changes shape, so this table belongs to something else (another "
            "registry sharing the store, or a leftover): drop it, or point this registry at another online store."
        )


# --- values as text: arrays in SQLite and Redis -----------------------------------------------

_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode


def plain_values(column: pa.ChunkedArray | pa.Array, dtype: str) -> list[Any]:
    """Python values to store for a column of ``dtype`` in SQLite or Redis: Bool as 0/1, UnixTimestamp as int
    microseconds, arrays as JSON text (Bytes elements in base64); everything else as Arrow gives it."""
    parsed = parse_type(dtype)
    if isinstance(parsed, Array):
        return _json_texts(column, parsed.base_type.name)
    if parsed.name == "Bool":
        return column.cast(pa.int8()).to_pylist()  # type: ignore[no-any-return]
    if parsed.name == "UnixTimestamp":
        return column.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]
    return column.to_pylist()  # type: ignore[no-any-return]


def array_from_plain(values: Sequence[Any], dtype: str) -> pa.Array:
    """The inverse of :func:`plain_values` (JSON text may also come as bytes)."""
    parsed = parse_type(dtype)
    if isinstance(parsed, Array):
        return array_from_json(values, parsed)
    if parsed.name == "Bool":
        return pa.array(values, pa.int8()).cast(pa.bool_())
    if parsed.name == "UnixTimestamp":
        return pa.array(values, pa.int64()).cast(TIMESTAMP)
    return pa.array(values, arrow_type(parsed))


def array_from_json(values: Sequence[str | bytes | None], dtype: Array) -> pa.Array:
    """Arrays stored as JSON text back as an Arrow list array of ``dtype``."""
    base = dtype.base_type.name
    lists = [None if v is None else json.loads(v) for v in values]
    if base == "Bytes":
        lists = [None if v is None else [None if b is None else base64.b64decode(b) for b in v] for v in lists]
    if base == "UnixTimestamp":
        return pa.array(lists, pa.list_(pa.int64())).cast(arrow_type(dtype))
    if base == "Bool":
        return pa.array(lists, pa.list_(pa.bool_()))
    return pa.array(lists, arrow_type(dtype))


def _json_texts(column: pa.ChunkedArray | pa.Array, base: str) -> list[str | None]:
    if base == "UnixTimestamp":
        column = column.cast(pa.list_(pa.int64()))
    lists = column.to_pylist()
    if base == "Bytes":
        lists = [None if v is None else [None if b is None else base64.b64encode(b).decode("ascii") for b in v]
                 for v in lists]
    return [None if v is None else _COMPACT_JSON(v) for v in lists]


# --- URLs -------------------------------------------------------------------------------------


def unavailable(what: str, url: str, err: BaseException, check: str) -> OnlineStoreUnavailableError:
    """The error for a store that cannot be reached: the masked URL, the cause without any password, what to check."""
    cause = (str(err).strip().splitlines() or ["no reply"])[0].rstrip(".")
    return OnlineStoreUnavailableError(
        f"Cannot reach the {what} online store at {masked_url(url)}: {redact(cause, url)}. {check}")
