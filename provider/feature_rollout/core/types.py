"""Feature value types, named as in Feast (``feast.types``) so that a Feast repo ports by changing imports."""

from __future__ import annotations

import re
from dataclasses import dataclass

from feature_rollout.core.errors import InvalidDefinitionError


@dataclass(frozen=True)
class PrimitiveType:
    """A scalar feature type such as ``Int64``."""

    name: str

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Array:
    """A list of one primitive type, e.g. ``Array(Float32)`` for an embedding."""

    base_type: PrimitiveType

    def __post_init__(self) -> None:
        if not isinstance(self.base_type, PrimitiveType):
            raise InvalidDefinitionError(f"Array() takes a primitive type such as Float32, got {self.base_type!r}.")

    @property
    def name(self) -> str:
        return f"Array({self.base_type.name})"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


FeatureType = PrimitiveType | Array

Bytes = PrimitiveType("Bytes")
String = PrimitiveType("String")
Bool = PrimitiveType("Bool")
Int32 = PrimitiveType("Int32")
Int64 = PrimitiveType("Int64")
Float32 = PrimitiveType("Float32")
Float64 = PrimitiveType("Float64")
UnixTimestamp = PrimitiveType("UnixTimestamp")

PRIMITIVE_TYPES: dict[str, PrimitiveType] = {
    t.name: t for t in (Bytes, String, Bool, Int32, Int64, Float32, Float64, UnixTimestamp)
}
NUMERIC_TYPES = frozenset({Int32, Int64, Float32, Float64})
_ARRAY = re.compile(r"Array\((\w+)\)")


def parse_type(value: object) -> FeatureType:
    """Return the type named by ``value`` (a type object, or its name such as ``"Array(Int64)"``)."""
    if isinstance(value, PrimitiveType | Array):
        return value
    if isinstance(value, str):
        if value in PRIMITIVE_TYPES:
            return PRIMITIVE_TYPES[value]
        match = _ARRAY.fullmatch(value)
        if match and match.group(1) in PRIMITIVE_TYPES:
            return Array(PRIMITIVE_TYPES[match.group(1)])
    names = ", ".join(sorted(PRIMITIVE_TYPES))
    raise InvalidDefinitionError(f"{value!r} is not a feature type; use one of {names} or Array(<one of those>).")
