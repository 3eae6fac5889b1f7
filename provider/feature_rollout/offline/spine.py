"""Spines: the entity rows (join keys + ``event_timestamp``) that historical retrieval and parity read.

:func:`normalize_spine` turns what a caller passes in into the one form the joins use;
:func:`spine_digest` fingerprints a spine so that a stored parity spine can be checked later.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_rollout.arrow_types import TIMESTAMP
from feature_rollout.core.errors import EntityKeyError, NaiveTimestampError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EVENT_TIMESTAMP", "normalize_spine", "spine_digest"]

EVENT_TIMESTAMP = "event_timestamp"


def normalize_spine(entity_df: pd.DataFrame | pa.Table) -> pa.Table:
    """Check a spine and bring its ``event_timestamp`` column to ``timestamp[us, tz=UTC]``.

    Every other column is kept as it is, in its place. A pandas DataFrame is converted to Arrow
    first; its index is dropped (move an index that carries data into a column first).
    Nanosecond timestamps are truncated to microseconds.

    :param entity_df: a ``pandas.DataFrame`` or ``pyarrow.Table`` with join keys and ``event_timestamp``.
    :return: the spine as an Arrow table.
    :raises EntityKeyError: there is no ``event_timestamp`` column, or it does not hold timestamps.
    :raises NaiveTimestampError: ``event_timestamp`` has no time zone.
    """
    table = _as_table(entity_df)
    if table.column_names.count(EVENT_TIMESTAMP) != 1:
        problem = "has no" if EVENT_TIMESTAMP not in table.column_names else "has more than one"
        raise EntityKeyError(
            f"The entity rows {problem} '{EVENT_TIMESTAMP}' column (columns: {', '.join(table.column_names)}). "
            f"Give exactly one column named '{EVENT_TIMESTAMP}' with the timezone-aware time of each row."
        )
    index = table.schema.get_field_index(EVENT_TIMESTAMP)
    column = table.column(index)
    found = column.type
    if not pa.types.is_timestamp(found):
        raise EntityKeyError(
            f"The '{EVENT_TIMESTAMP}' column of the entity rows holds {found}, not timestamps. Convert it, e.g. "
            f'df["{EVENT_TIMESTAMP}"] = pandas.to_datetime(df["{EVENT_TIMESTAMP}"], utc=True).'
        )
    if found.tz is None:
        raise NaiveTimestampError(
            f"The '{EVENT_TIMESTAMP}' column of the entity rows has no time zone ({found}). Timestamps passed in "
            f'must be timezone-aware: df["{EVENT_TIMESTAMP}"] = df["{EVENT_TIMESTAMP}"].dt.tz_localize("UTC") if '
            f"they are UTC (or tz_localize with their zone), or pyarrow.compute.assume_timezone(column, 'UTC')."
        )
    if found != TIMESTAMP:
        column = column.cast(TIMESTAMP, safe=found.unit != "ns")
    return table.set_column(index, pa.field(EVENT_TIMESTAMP, TIMESTAMP), column)


def _as_table(entity_df: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(entity_df, pa.Table):
        return entity_df
    import pandas as pd  # only when a DataFrame is passed: importing pandas costs a lot

    if isinstance(entity_df, pd.DataFrame):
        return pa.Table.from_pandas(entity_df, preserve_index=False)
    raise TypeError(f"Entity rows must be a pandas.DataFrame or a pyarrow.Table, got {type(entity_df).__name__}.")


def spine_digest(spine: pa.Table) -> str:
    """SHA-256 (hex) of a canonical serialization of ``spine``.

    The same column names, types and rows in the same order give the same digest, however the
    table is chunked and whatever schema metadata it carries (pandas metadata, for example).

    :param spine: a spine (usually :func:`normalize_spine`'s or ``sample_spine``'s output).
    """
    digest = hashlib.sha256(b"feature-rollout spine v1\n")
    header = [[field.name, str(field.type)] for field in spine.schema]
    _update(digest, json.dumps({"rows": spine.num_rows, "columns": header}).encode())
    for column in spine.columns:
        _update(digest, np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=np.uint8).tobytes())
        for part in _value_bytes(column):
            _update(digest, part)
    return digest.hexdigest()


def _update(digest: Any, data: bytes | memoryview) -> None:
    # Length-prefixed, so that no two different sequences of parts serialize alike.
    digest.update(struct.pack("<q", len(data)))
    digest.update(data)


def _value_bytes(column: pa.ChunkedArray) -> list[bytes | memoryview]:
    """The values of ``column`` as bytes; null slots count as zero/empty (validity is hashed apart)."""
    t = pa.types
    kind = column.type
    if t.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if t.is_boolean(kind) or t.is_integer(kind) or t.is_floating(kind) or t.is_temporal(kind):
        if t.is_temporal(kind) and not t.is_time32(kind) and not t.is_date32(kind):
            column = column.cast(pa.int64())
        elif t.is_time32(kind) or t.is_date32(kind):
            column = column.cast(pa.int32())
        filled = column.fill_null(pa.scalar(0, column.type) if not t.is_boolean(kind) else False)
        values = filled.to_numpy()
        return [values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()]
    if t.is_string(kind) or t.is_large_string(kind) or t.is_binary(kind) or t.is_large_binary(kind) or (
        t.is_string_view(kind) or t.is_binary_view(kind) or t.is_fixed_size_binary(kind)
    ):
        filled = column.cast(pa.large_binary()).fill_null(b"")
        lengths = pc.binary_length(filled).to_numpy().astype("<i8")
        data_parts: list[bytes | memoryview] = []
        for chunk in filled.chunks:
            if len(chunk) == 0:
                continue
            offsets = np.frombuffer(chunk.buffers()[1], dtype="<i8")[chunk.offset:chunk.offset + len(chunk) + 1]
            data = chunk.buffers()[2]
            if data is not None and offsets[-1] > offsets[0]:
                data_parts.append(memoryview(data)[int(offsets[0]):int(offsets[-1])])
        return [lengths.tobytes(), b"".join(data_parts)]
    # Nested and rare types: their Python values as JSON (slower, but exact).
    return [json.dumps(column.to_pylist(), default=repr, sort_keys=True).encode()]
