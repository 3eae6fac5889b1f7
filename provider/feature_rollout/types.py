"""Feature value types: ``from feature_rollout.types import Float32, Int64, ...`` (as ``feast.types``)."""

from __future__ import annotations

from feature_rollout.core.types import (
    Array,
    Bool,
    Bytes,
    FeatureType,
    Float32,
    Float64,
    Int32,
    Int64,
    PrimitiveType,
    String,
    UnixTimestamp,
    parse_type,
)

__all__ = [
    "Array",
    "Bool",
    "Bytes",
    "FeatureType",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "PrimitiveType",
    "String",
    "UnixTimestamp",
    "parse_type",
]
