"""Feature types (``feature_rollout.types``) as Arrow types, shared by the offline and online stores.

Timestamps inside the data plane are UTC microseconds: Arrow ``timestamp("us", tz="UTC")`` for
event-time columns, and ``int64`` for the ``_event_ts``/``_created_ts`` bookkeeping columns of
online tables.
"""

from __future__ import annotations

import pyarrow as pa

from feature_rollout.core.types import Array, PrimitiveType, parse_type

EVENT_TS = "_event_ts"
CREATED_TS = "_created_ts"
TIMESTAMP = pa.timestamp("us", tz="UTC")

_PRIMITIVES: dict[str, pa.DataType] = {
    "Bytes": pa.binary(),
    "String": pa.string(),
    "Bool": pa.bool_(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "UnixTimestamp": TIMESTAMP,
}


def arrow_type(dtype: str | PrimitiveType | Array) -> pa.DataType:
    """The Arrow type of a feature type (or its name, such as ``"Array(Float32)"``)."""
    parsed = parse_type(dtype)
    if isinstance(parsed, Array):
        return pa.list_(_PRIMITIVES[parsed.base_type.name])
    return _PRIMITIVES[parsed.name]


def feature_type_of(arrow: pa.DataType) -> str | None:
    """The feature type name for an Arrow type (``None`` when there is none, e.g. a struct)."""
    if pa.types.is_timestamp(arrow):
        return "UnixTimestamp"
    if pa.types.is_integer(arrow):
        return "Int32" if arrow.bit_width <= 32 else "Int64"
    if pa.types.is_floating(arrow):
        return "Float32" if arrow.bit_width <= 32 else "Float64"
    if pa.types.is_boolean(arrow):
        return "Bool"
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return "String"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow) or pa.types.is_fixed_size_binary(arrow):
        return "Bytes"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        inner = feature_type_of(arrow.value_type)
        return f"Array({inner})" if inner and not inner.startswith("Array") else None
    return None


def is_numeric(dtype: str) -> bool:
    return dtype in ("Int32", "Int64", "Float32", "Float64")
